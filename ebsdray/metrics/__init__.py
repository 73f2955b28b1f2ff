"""Metrics of the task outputs against ground truth; the baselines they
are compared with live in :mod:`ebsdray.aggregate.baselines`.

Pure functions of arrays (numpy arrays or torch tensors in, floats or numpy out)::

    true = grain_boundaries(grain_ids)                    # (H, W) bool
    chamfer(pred_boundary, true)["bidirectional"]         # pytorch3d semantics, exact on the raster
    blurred_bce(confidence, true)                         # sigma 3, radius 5
    disorientation_stats(q_pred, q_true, grain_ids)       # {"mean_deg", "boundary_deg"}
    psnr(pl_pred, pl_true, data_range=2.0), ssim(...)
"""

from ebsdray.metrics.boundaries import blurred_bce, blurred_target, chamfer, grain_boundaries
from ebsdray.metrics.image import psnr, ssim
from ebsdray.metrics.orientation import disorientation_stats, near_boundaries

__all__ = [
    "blurred_bce",
    "blurred_target",
    "chamfer",
    "disorientation_stats",
    "grain_boundaries",
    "near_boundaries",
    "psnr",
    "ssim",
]
