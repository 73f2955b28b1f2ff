"""One implementation for numpy and torch: maths is written in torch, numpy callers get numpy back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])


def _to_torch(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        return torch.from_numpy(x if x.flags.c_contiguous else x.copy())
    return x


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    if isinstance(x, tuple):
        return tuple(_to_numpy(v) for v in x)
    return x


def numpy_or_torch(fn: F) -> F:
    """Let a torch function take numpy arrays: if any positional argument is a numpy array, all
    arrays are converted (dtype kept, no copy where possible) and the result is returned as numpy."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, np.ndarray) for a in args):
            out = fn(*(_to_torch(a) for a in args), **kwargs)
            return _to_numpy(out)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def as_float_tensor(x: Any) -> torch.Tensor:
    """A tensor of a floating dtype (float64 for python/integer input)."""
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.float64)


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU first)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16 (a sampler may return it): widen half types to float32.
        x = x.float().numpy() if x.dtype.is_floating_point and x.element_size() < 4 else x.numpy()
    return np.asarray(x, dtype=dtype)
