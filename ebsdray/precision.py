"""Numeric precision of the network, chosen from the hardware (one setting for every job).

``precision`` is ``"auto"``, ``"fp32"`` or ``"bf16"``. ``auto`` picks bf16 only where the device
runs it natively: a CUDA GPU that reports bf16 support, or an x86 CPU with AVX512_BF16 or AMX-BF16
instructions. Everywhere else (AVX2-only x86, other CPUs) it is fp32, because emulated bf16 can
be far slower than fp32 (26x for the shipped denoiser on an AVX2 server core).

bf16 covers the network only (autocast); the samplers' arithmetic stays float32::

    prec = resolve_precision("auto", device)           # "fp32" or "bf16"
    with network_autocast(prec, device):
        eps = net(x_t, t)
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from typing import Literal

import torch

__all__ = [
    "PRECISIONS",
    "Precision",
    "apply_deterministic_settings",
    "cpu_has_native_bf16",
    "cpu_name",
    "network_autocast",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["fp32", "bf16"]

# x86 CPU flags (Linux /proc/cpuinfo names) of instructions that compute in bf16 natively.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpuinfo(field: str) -> str | None:
    """The first value of ``field`` in Linux ``/proc/cpuinfo``; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """This CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows: reports
    name it beside their times, since one precision's speed differs several-fold between CPUs."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512_BF16 or AMX-BF16; Linux x86 only).

    Read from ``/proc/cpuinfo``; where it cannot be read (macOS, Windows, ARM) the answer is
    False, so ``auto`` falls back to fp32, which is never the slow choice.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return bool(_NATIVE_BF16_FLAGS & set((_cpuinfo("flags") or "").split()))


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> Precision:
    """The precision to run the network in on ``device``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
        ``auto``: the environment variable ``EBSDRAY_PRECISION`` when set (fp32 or bf16), else
        bf16 where the device runs it natively (see module docstring), else fp32.
        ``bf16`` is honoured even where it is emulated (slow, but the user asked for it).
    device : the device the network runs on.

    Returns
    -------
    "fp32" or "bf16".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "auto":
        return precision  # type: ignore[return-value]
    forced = os.environ.get("EBSDRAY_PRECISION", "")
    if forced:  # a machine-wide choice for "auto", e.g. to stand in for a CPU without bf16
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"EBSDRAY_PRECISION must be fp32 or bf16; got {forced!r}")
        return forced  # type: ignore[return-value]
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


@contextlib.contextmanager
def network_autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """bf16 autocast around a network call when ``precision`` resolves to bf16, else nothing."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def apply_deterministic_settings(device: torch.device | str) -> None:
    """Ask the framework for deterministic kernels on ``device`` (GPUs: cuDNN and cuBLAS).

    CPU kernels are deterministic for a fixed input shape and thread count already; on CUDA the
    default cuDNN autotuner and atomics-based kernels are not. Call before the first network call
    of a process (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts).
    """
    if torch.device(device).type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
