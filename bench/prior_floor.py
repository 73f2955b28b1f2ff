"""Is the merge or the prior the floor of the boundaries? Oracles that start from the truth.

    .venv/bin/python bench/prior_floor.py                 # 33 min on 2 AVX2 cores (8 sections)
    .venv/bin/python bench/prior_floor.py --quick         # seed 5102, one section: 4 min
    .venv/bin/python bench/prior_floor.py --model /abs/multimodal.pt   # a retrained prior
    .venv/bin/python bench/prior_floor.py --only default --fractions 1 0.25 0.0625 0
    .venv/bin/python bench/prior_floor.py --only default --tile 64   # whole 64 x 64 sections

On the validation volumes only (seeds 5101-5104, never the test volumes), EBSD on a grid, PL
noise 0.05, K = 8 in fp32. For each fraction it prints the mean boundary Chamfer (and
disorientation) of the merge given

- the truth's clean channels as every sample: the merge's own floor, no prior involved;
- the default guided sampler started from the truth diffused to t (instead of from the
  nearest-upsampled observation at the default's t = 400), with and without guidance: how much
  noise the prior can take before it places the borders where the default does;
- the default sampler: what the product gives.

A prior that places borders better shows as the truth-started rows staying low up to higher t
and the default row moving towards the merge's floor (issue 10, item 4).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

import ebsdray
from ebsdray.experiments.volumes import VALIDATION_SEEDS, validation_volume
from ebsdray.inverse.fps_smc import sample_generators
from ebsdray.inverse.guided import guided_sampler
from ebsdray.inverse.tiling import TiledDenoiser
from ebsdray.posterior import SamplerSpec, merge_section, sample_section, section_metrics

FRACTIONS = (1.0, 0.25)
START_T = (20, 50, 100, 250)
K = 8


def from_truth(model, section, start_t: int, guided: bool) -> torch.Tensor:
    """(K, C, H, W) samples of the default guided sampler started from the section's clean
    channels diffused to ``start_t`` (guidance off: observed entries are only replaced)."""
    spec, obs = SamplerSpec(), section.observation.for_variant(model.variant)
    weights = [spec.ebsd_guidance] * obs.ebsd_channels + [spec.pl_guidance] * obs.pl_channels
    samples, _ = guided_sampler(
        TiledDenoiser(model.net, model.window), model.schedule, obs,
        sample_generators(0, section.index, list(range(K))), num_steps=spec.steps,
        guidance=weights if guided else 0.0, start_from=section.clean, start_t=start_t,
        precision="fp32",
    )  # fmt: skip
    return samples.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seed 5102, one section")
    parser.add_argument("--model", default="multimodal", help="shipped name or checkpoint path")
    parser.add_argument("--only", default="", help="the settings whose label contains this")
    parser.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS)
    parser.add_argument(
        "--tile", type=int, default=0, help="sampling tile side (default: the training window)"
    )
    args = parser.parse_args()
    seeds, sections = ([5102], 1) if args.quick else (list(VALIDATION_SEEDS), 2)
    model = ebsdray.load_model(args.model)
    if args.tile:
        # The U-Net is fully convolutional: a tile larger than its training window gives each
        # pixel more context (64 = each validation section in one piece, no blending).
        model = dataclasses.replace(model, window=args.tile)
    # (label, start t of a truth-started chain or None, guided)
    settings = [("truth as samples", None, False), ("default sampler", None, True)]
    settings += [(f"from truth at t = {t}{'' if g else ', no guidance'}", t, g)
                 for t in START_T for g in (True, False)]  # fmt: skip
    settings = [s for s in settings if args.only in s[0]]
    rows: dict[tuple[float, str], list[tuple[float, float]]] = {}
    for seed in seeds:
        volume = validation_volume(seed, sections)
        for fraction in args.fractions:
            observed = ebsdray.observe(volume, ebsd_fraction=fraction, pl_noise=0.05, seed=0)
            for z in range(sections):
                section = observed.section(z, model.codec)
                for name, start_t, guided in settings:
                    if fraction in (0, 1) and start_t is not None:
                        continue  # full EBSD: they are the truth; none: no observed borders to place
                    if start_t is not None:
                        x = from_truth(model, section, start_t, guided)
                    elif guided:
                        x, _ = sample_section(
                            model, section, SamplerSpec(), 0, range(K), precision="fp32"
                        )
                    else:
                        x = section.clean[None].repeat(K, 1, 1, 1)
                    m = section_metrics(merge_section(section, x, model.codec, model.variant),
                                        section, model.codec)  # fmt: skip
                    rows.setdefault((fraction, name), []).append(
                        (m["chamfer"], m["disorientation_mean_deg"])
                    )
            print(f"seed {seed}, EBSD {fraction:g}: done", flush=True)
    print("\n| EBSD | merge given | Chamfer | disorientation (deg) |\n|---|---|---|---|")
    for (fraction, name), v in rows.items():
        c, d = np.mean(v, axis=0)
        print(f"| {fraction:g} | {name} | {c:.4f} | {d:.3f} |")


if __name__ == "__main__":
    main()
