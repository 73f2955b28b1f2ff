"""Precision chosen from the hardware: one setting, resolved per device, recorded with outputs."""

import pytest
import torch

from ebsdray.precision import cpu_has_native_bf16, network_autocast, resolve_precision
from ebsdray.training import TrainConfig


def test_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch) -> None:
    monkeypatch.delenv("EBSDRAY_PRECISION", raising=False)
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    native = ("avx512_bf16" in flags) or ("amx_bf16" in flags)
    assert cpu_has_native_bf16() == native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_explicit_precisions_are_honoured(precision: str) -> None:
    assert resolve_precision(precision, "cpu") == precision
    with torch.inference_mode(), network_autocast(precision, "cpu"):
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)


def test_unknown_precision_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'.*auto"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        TrainConfig(name="x", variant="multimodal", data_dir="/d", run_dir="/r", precision="half")


def test_environment_overrides_auto_only(monkeypatch) -> None:
    monkeypatch.setenv("EBSDRAY_PRECISION", "fp32")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    monkeypatch.setenv("EBSDRAY_PRECISION", "half")
    with pytest.raises(ValueError, match="EBSDRAY_PRECISION"):
        resolve_precision("auto")
