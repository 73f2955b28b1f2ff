"""Array plumbing shared by the metrics: they take numpy arrays or torch tensors alike."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU first)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        # numpy has no bfloat16 (a sampler may return it): widen half types to float32.
        x = x.float().numpy() if x.dtype.is_floating_point and x.element_size() < 4 else x.numpy()
    return np.asarray(x, dtype=dtype)


def check_image(name: str, x: np.ndarray, ndim: int = 2) -> np.ndarray:
    """Raise a clear error unless ``x`` has ``ndim`` dimensions."""
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {x.shape}")
    return x
