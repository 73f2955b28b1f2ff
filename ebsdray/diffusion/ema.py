"""Exponential moving average of model weights (the weights samples are drawn with).

Example::

    ema = EMA(net, decay=0.999)
    for batch in loader:
        ...; opt.step(); ema.update(net)
    ema.copy_to(eval_net)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy ``s <- d s + (1 - d) w`` of a model's floating-point parameters and buffers.

    Parameters
    ----------
    model : nn.Module
        Its current weights initialise the shadow.
    decay : float
        Target decay ``d`` in [0, 1).
    warmup : bool
        Use ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is not
        dominated by the random initial weights when runs are short (the usual TF/ADM rule).

    Notes
    -----
    The shadow is kept in float32 whatever the model's dtype, so many tiny updates are not lost
    to rounding. Non-float buffers (counters) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1); got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            name: (v.detach().float() if v.is_floating_point() else v.detach()).clone()
            for name, v in model.state_dict().items()
        }

    def current_decay(self) -> float:
        """Decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards ``model``'s current weights (call after each optimiser step)."""
        d = self.current_decay()
        state = model.state_dict()
        if state.keys() != self.shadow.keys():
            raise ValueError("EMA.update: model's state_dict keys differ from the shadow's")
        avg, new = [], []
        for name, value in state.items():
            s = self.shadow[name]
            if s.is_floating_point():
                avg.append(s)
                new.append(value.detach().to(s.device, s.dtype))
            else:
                s.copy_(value)
        # One fused call instead of one small kernel per tensor (~130 of them in the U-Net).
        torch._foreach_lerp_(avg, new, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes and devices)."""
        model.load_state_dict(self.shadow, strict=True)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers, loadable with ``torch.load(weights_only=True)``."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("EMA state does not match this model's parameters")
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.shadow = {k: v.detach().clone() for k, v in state["shadow"].items()}
