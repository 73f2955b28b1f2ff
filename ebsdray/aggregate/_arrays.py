"""Array plumbing: the aggregators take numpy arrays or torch tensors and return numpy."""

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
