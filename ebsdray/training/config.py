"""Training configuration: a plain dataclass (Hydra composes it; Ray workers get it as a dict)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ebsdray.conventions import VARIANTS
from ebsdray.precision import PRECISIONS

LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything one training run needs.

    Attributes
    ----------
    name : run name; a run with the same name and ``run_dir`` resumes from its last checkpoint.
    variant : "multimodal" | "ebsd" | "pl".
    data_dir : absolute path of a dataset written by ``jobs/generate_data.py``.
    run_dir : absolute directory for ``last.pt`` and ``best.pt`` (shared storage on multi-node).
    model_size : architecture preset ("small" or "paper"); ``architecture`` overrides its fields.
    window : training window edge (pixels); must be a multiple of the network's downsampling.
    batch_size : windows per worker per step.
    steps : total optimizer steps.
    lr, warmup_steps, weight_decay, grad_clip : AdamW with linear warm-up to ``lr``.
    lr_schedule : after the warm-up, "constant" or "cosine" (decays to ``lr_final`` at ``steps``).
    lr_final : the cosine schedule's last learning rate.
    init_from : "" (random initial weights), a shipped model name or a checkpoint path whose
        weights and EMA a new run starts from, with a fresh optimizer (fine-tuning a model on
        this machine's time budget); it must have the run's variant, architecture and codec. A
        run that resumes from its own ``last.pt`` ignores it.
    ema_decay : EMA of the weights (samplers use the EMA weights).
    precision : "auto" (bf16 where the device runs it natively, else fp32), "fp32" or "bf16";
        the network's autocast (:mod:`ebsdray.precision`).
    val_interval : steps between validations (loss on a fixed held-out set, checkpoint, figure).
    val_windows : windows in the fixed validation set.
    sample_count, sample_steps : unconditional samples drawn for the figure at each validation.
    log_interval : steps between training-loss logs.
    seed : base seed (initialisation, data order, noise).
    threads : torch intra-op threads per worker (0 = torch's default).
    tracking_uri, experiment : MLflow store (absolute) and experiment; empty URI = no MLflow.
    """

    name: str
    variant: str
    data_dir: str
    run_dir: str
    model_size: str = "small"
    architecture: dict[str, Any] = field(default_factory=dict)
    window: int = 32
    batch_size: int = 32
    steps: int = 14_000
    lr: float = 3e-4
    warmup_steps: int = 500
    lr_schedule: str = "constant"
    lr_final: float = 0.0
    init_from: str = ""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"
    val_interval: int = 1000
    val_windows: int = 256
    sample_count: int = 8
    sample_steps: int = 50
    log_interval: int = 50
    seed: int = 0
    threads: int = 0
    tracking_uri: str = ""
    experiment: str = "ebsdray-train"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model variant {self.variant!r}; choose one of {VARIANTS}")
        for name in ("window", "batch_size", "steps", "val_interval", "val_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"unknown lr_schedule {self.lr_schedule!r}; choose one of {LR_SCHEDULES}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")

    def learning_rate(self, step: int) -> float:
        """The learning rate of 0-based optimizer ``step``: linear warm-up, then the schedule."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1)
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown training config keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**d)
