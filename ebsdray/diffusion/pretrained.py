"""Trained diffusion models: a network with its EMA weights, channel codec and noise schedule.

    model = load_model("multimodal")          # the default shipped inside the package
    model = load_model("/abs/run/best.pt")    # any checkpoint from jobs/train.py
    eps = model(x_t, t)                       # (B, C, H, W), (B,) -> (B, C, H, W)

Shipped defaults live in ``ebsdray/weights/<variant>.pt`` with the exact training config and
provenance in ``<variant>.yaml`` beside them (see the model card in the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ebsdray.conventions import VARIANTS
from ebsdray.data.codec import ChannelCodec
from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.io.checkpoint import load_checkpoint, pack_weights, save_checkpoint
from ebsdray.model.unet import UNet, UNetConfig, variant_channels

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


@dataclass
class DiffusionModel:
    """A trained denoiser, ready to sample with (EMA weights, eval mode, no gradients).

    Attributes
    ----------
    net : the U-Net, ``eps = net(x_t, t)``.
    codec : channel codec of the data the model was trained on.
    variant : "multimodal" (3 + C_PL channels), "ebsd" (3) or "pl" (C_PL).
    schedule : the DDPM schedule it was trained with.
    window : training window edge; larger sections are tiled.
    source : shipped name or absolute checkpoint path (the model's identity in outputs).
    provenance : training facts (steps, validation loss, config) where known.
    """

    net: UNet
    codec: ChannelCodec
    variant: str
    schedule: DiffusionSchedule
    window: int
    source: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.net.config.in_channels

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t)

    def to(self, device: str | torch.device) -> DiffusionModel:
        self.net.to(device)
        return self


def shipped_model_path(name: str) -> Path:
    """Path of a shipped default model (``multimodal``, ``ebsd`` or ``pl``)."""
    if name not in VARIANTS:
        raise ValueError(f"no shipped model {name!r}; shipped models: {VARIANTS}")
    return WEIGHTS_DIR / f"{name}.pt"


def model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The checkpoint file of a shipped model name (which must be installed) or of a path."""
    if str(name_or_path) in VARIANTS:
        path = shipped_model_path(str(name_or_path))
        if not path.exists():
            raise FileNotFoundError(
                f"the shipped {name_or_path!r} weights are missing from this installation "
                f"({path}); reinstall ebsdray or train one with "
                f"`python jobs/train.py model={name_or_path}` and pass its best.pt path"
            )
        return path
    return Path(name_or_path).expanduser().resolve()


def load_model(
    name_or_path: str | os.PathLike[str] = "multimodal",
    *,
    variant: str | None = None,
    device: str | torch.device = "cpu",
) -> DiffusionModel:
    """Load a shipped default model by name, or any checkpoint by path.

    Parameters
    ----------
    name_or_path : "multimodal", "ebsd", "pl", or a checkpoint path (``best.pt`` of a run, or an
        exported model).
    variant : if given, refuse a model of another variant (a clear error instead of a shape
        mismatch deep inside a sampler).
    device : where the network goes.
    """
    path = model_path(name_or_path)
    ckpt = load_checkpoint(path)
    codec = ChannelCodec.from_dict(ckpt["codec"])
    config = UNetConfig.from_dict(ckpt["model_config"])
    expected = variant_channels(ckpt["variant"], codec.pl_channels)
    if config.in_channels != expected:
        raise ValueError(
            f"{path}: a {ckpt['variant']!r} model must have {expected} channels for its codec "
            f"(3 EBSD + {codec.pl_channels} PL); it has {config.in_channels}. The file is corrupt "
            "or from an incompatible ebsdray."
        )
    if variant is not None and ckpt["variant"] != variant:
        raise ValueError(f"{path} holds a {ckpt['variant']!r} model; a {variant!r} model is needed")
    net = UNet(config)
    net.load_state_dict(ckpt["ema_weights"])
    net.eval().requires_grad_(False).to(device)
    return DiffusionModel(
        net=net,
        codec=codec,
        variant=ckpt["variant"],
        schedule=DiffusionSchedule(**ckpt["schedule"]),
        window=int(ckpt["window"]),
        source=str(name_or_path) if str(name_or_path) in VARIANTS else str(path),
        provenance=dict(ckpt.get("provenance", {})),
    )


def export_model(
    checkpoint: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a compact copy of a training checkpoint for shipping: EMA weights, architecture,
    codec and schedule only (no optimizer, no raw weights), plus ``provenance``; the training
    config goes to a YAML file beside it."""
    ckpt = load_checkpoint(checkpoint)
    state = ckpt.get("train_state", {})
    facts = {
        "step": state.get("step"),
        "best_val_loss": state.get("best_val_loss"),
        **(provenance or {}),
    }
    slim = {k: ckpt[k] for k in ("variant", "model_config", "codec", "schedule", "window")}
    slim["ema_weights"] = pack_weights(ckpt["ema_weights"])
    slim["provenance"] = facts
    dest = save_checkpoint(slim, destination)
    card = {"provenance": facts, "train_config": state.get("config", {})}
    dest.with_suffix(".yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest
