"""ebsdray.inverse: observation operators, posterior samplers and tiling (pure tensor code).

Example::

    from ebsdray.inverse import MultimodalOperator, fps_smc, sample_generators

    obs = MultimodalOperator(pl_channels=5, pattern="grid", ebsd_fraction=1 / 4).observe(x, 0)
    samples, info = fps_smc(net, schedule, obs, sample_generators(seed, section, range(8)))
"""

from ebsdray.inverse.baseline import replacement_sampler
from ebsdray.inverse.fps_smc import fps_smc, sample_generators, systematic_resample
from ebsdray.inverse.gaussian import GaussianPrior, calibration, toy_problem
from ebsdray.inverse.operators import PATTERNS, MultimodalOperator, Observation, grid_fractions
from ebsdray.inverse.tiling import TiledDenoiser, tile_starts

__all__ = [
    "PATTERNS",
    "GaussianPrior",
    "MultimodalOperator",
    "Observation",
    "TiledDenoiser",
    "calibration",
    "fps_smc",
    "grid_fractions",
    "replacement_sampler",
    "sample_generators",
    "systematic_resample",
    "tile_starts",
    "toy_problem",
]
