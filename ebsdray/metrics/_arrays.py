"""Array plumbing shared by the metrics: they take numpy arrays or torch tensors alike."""

from __future__ import annotations

import numpy as np

from ebsdray.data._arrays import as_numpy

__all__ = ["as_numpy", "check_image"]


def check_image(name: str, x: np.ndarray, ndim: int = 2) -> np.ndarray:
    """Raise a clear error unless ``x`` has ``ndim`` dimensions."""
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {x.shape}")
    return x
