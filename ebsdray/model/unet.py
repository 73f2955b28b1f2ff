"""Transformer-based U-Net denoiser ``eps = net(x_t, t)``.

Residual conv blocks carry the high resolutions (cheap, local, and they give the later attention an
implicit sense of position through zero padding); at the low resolutions listed in
``attention_levels`` each residual block is followed by a pre-norm transformer block (self-attention
+ MLP) so distant grains can see each other. The rest of the package sees this module only as a
callable ``(x_t, t) -> eps``.

Shapes: ``x_t`` is ``(B, C_in, H, W)`` with H and W divisible by ``2 ** (len(channel_mults) - 1)``;
``t`` is ``(B,)`` integer (or float) diffusion timesteps, or a scalar broadcast over the batch; the
output is ``(B, C_out, H, W)``.

Example::

    net = build_model("multimodal", pl_channels=5, size="small")
    eps = net(torch.randn(8, 8, 32, 32), torch.randint(0, 1000, (8,)))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ebsdray.conventions import VARIANTS, ChannelLayout

__all__ = ["VARIANTS", "UNet", "UNetConfig", "build_model", "model_config", "variant_channels"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; stored in checkpoints via :meth:`to_dict`.

    Attributes
    ----------
    in_channels : int
        Channels of ``x_t``.
    out_channels : int or None
        Channels of the prediction; None means ``in_channels`` (epsilon prediction).
    base_channels : int
        Width of the first level; level ``i`` has ``base_channels * channel_mults[i]``.
    channel_mults : tuple of int
        One entry per resolution level; there are ``len(channel_mults) - 1`` downsamplings.
    num_res_blocks : int
        Residual blocks per level on the way down (the way up has one more, as usual).
    attention_levels : tuple of int
        Level indices (0 = full resolution) that get a transformer block after each residual
        block. Levels rather than pixel resolutions so one config serves any window size.
    num_heads : int
        Attention heads; every attention level's width must be divisible by it.
    dropout : float
        Dropout inside residual blocks and transformer MLPs.
    """

    in_channels: int
    out_channels: int | None = None
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (2,)
    num_heads: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        # Lists arrive from YAML/JSON/checkpoints; normalise so equality and hashing work.
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if self.in_channels < 1 or self.base_channels < 1 or not self.channel_mults:
            raise ValueError(f"invalid UNetConfig: {self}")
        for level in self.attention_levels:
            if not 0 <= level < len(self.channel_mults):
                raise ValueError(
                    f"attention level {level} outside 0..{len(self.channel_mults) - 1}"
                )
            width = self.base_channels * self.channel_mults[level]
            if width % self.num_heads:
                raise ValueError(f"width {width} of level {level} not divisible by num_heads")

    @property
    def resolved_out_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def downsample_factor(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (len(self.channel_mults) - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain ints/floats/lists only, so ``torch.load(weights_only=True)`` and YAML accept it."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _groups(channels: int) -> int:
    # GroupNorm(32) is the usual choice, but narrow layers would get one channel per group
    # (instance norm, which erases per-channel statistics): keep at least 4 channels per group.
    return max(g for g in range(1, 33) if channels % g == 0 and (channels // g >= 4 or g == 1))


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of diffusion timesteps.

    Parameters
    ----------
    t : (B,) tensor
        Timesteps (integer or fractional).
    dim : int
        Embedding width (even).

    Returns
    -------
    (B, dim) float32 tensor
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, time-modulated in between; 1x1 skip on width change.

    The time embedding enters as a scale and shift *after* the second GroupNorm: a plain added
    bias before it would be partly removed again by the normalisation.
    """

    def __init__(self, cin: int, cout: int, temb: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        # Zero-init the residual branch so every block starts as identity (stable early training).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP over the H*W tokens of a feature map."""

    def __init__(self, channels: int, num_heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_ratio * channels, channels),
        )
        for layer in (self.proj, self.mlp[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = (
            self.qkv(self.norm1(tokens))
            .view(b, h * w, 3, self.num_heads, c // self.num_heads)
            .permute(2, 0, 3, 1, 4)  # (3, B, heads, HW, head_dim)
        )
        if x.device.type == "cpu":
            # PyTorch's CPU flash kernel is tuned for long sequences; for these 16-256 tokens the
            # plain (math) kernel makes a whole block ~1.8x faster (8x8 tokens, batch 32, bf16,
            # forward + backward: 16 ms vs 9 ms measured). GPUs keep the fused kernels.
            with sdpa_kernel(SDPBackend.MATH):
                att = F.scaled_dot_product_attention(q, k, v)
        else:
            att = F.scaled_dot_product_attention(q, k, v)
        att = att.transpose(1, 2).reshape(b, h * w, c)
        tokens = tokens + self.proj(att)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class Stage(nn.Module):
    """One residual block, optionally followed by a transformer block."""

    def __init__(self, cin: int, cout: int, temb: int, cfg: UNetConfig, attention: bool) -> None:
        super().__init__()
        self.res = ResBlock(cin, cout, temb, cfg.dropout)
        self.attn = TransformerBlock(cout, cfg.num_heads, cfg.dropout) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """Epsilon-prediction U-Net; see the module docstring for shapes."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        base = cfg.base_channels
        temb = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg.in_channels, base, 3, padding=1)

        widths = [base * m for m in cfg.channel_mults]
        last = len(widths) - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_widths = [base]
        ch = base
        for level, width in enumerate(widths):
            attn = level in cfg.attention_levels
            for _ in range(cfg.num_res_blocks):
                self.down.append(Stage(ch, width, temb, cfg, attn))
                ch = width
                skip_widths.append(ch)
            if level != last:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)

        self.mid = nn.ModuleList(
            [
                Stage(ch, ch, temb, cfg, last in cfg.attention_levels),
                Stage(ch, ch, temb, cfg, False),
            ]
        )

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            attn = level in cfg.attention_levels
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(Stage(ch + skip_widths.pop(), widths[level], temb, cfg, attn))
                ch = widths[level]
            if level != 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))

        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, cfg.resolved_out_channels, 3, padding=1)
        # Zero output: the untrained net predicts eps = 0, i.e. x0_hat = x_t / sqrt(abar), a sane start.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _check(self, x: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        if x.ndim != 4:
            raise ValueError(f"x_t must be (B, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"input channel mismatch: expected {cfg.in_channels} channels, got {x.shape[1]}"
            )
        f = cfg.downsample_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"H and W must be multiples of {f}; got {tuple(x.shape[2:])}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or ({x.shape[0]},); got shape {tuple(t.shape)}")
        return t

    def forward(self, x: Tensor, t: Tensor | int) -> Tensor:
        """Predict the noise.

        Parameters
        ----------
        x : (B, C_in, H, W) tensor
            Noisy input ``x_t``.
        t : (B,) tensor or scalar
            Diffusion timesteps in model units (0..T-1).

        Returns
        -------
        (B, C_out, H, W) tensor
        """
        t = self._check(x, t)
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))

        h = self.conv_in(x)
        skips = [h]
        per_level = self.config.num_res_blocks
        for i, stage in enumerate(self.down):
            h = stage(h, emb)
            skips.append(h)
            level = i // per_level
            if (i + 1) % per_level == 0 and level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)

        for stage in self.mid:
            h = stage(h, emb)

        per_level += 1
        for i, stage in enumerate(self.up):
            h = stage(torch.cat([h, skips.pop()], dim=1), emb)
            level = i // per_level
            if (i + 1) % per_level == 0 and level < len(self.upsample):
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = self.upsample[level](h)

        return self.conv_out(F.silu(self.norm_out(h)))


def variant_channels(variant: str, pl_channels: int) -> int:
    """Input (= output) channels of a model variant: EBSD channels first, then PL."""
    return ChannelLayout(variant, pl_channels).channels


# Widths per size. "small": 32x32 windows, trainable on 2 CPU cores in about an hour. Measured with
# bench/bench_model.py (batch 32, bf16 autocast, 2 threads): full-resolution convs dominate, so
# level 0 and 1 stay at 32 channels (multiples of 16 suit oneDNN; 24 channels was slower); one
# more transformer level at 8x8 cost ~20% of the step rate (4.3 vs 5.2 steps/s).
# "paper": 64x64 windows on a GPU, ADM/CIFAR-like width, attention at 16x16 and 8x8.
_SIZES: dict[str, dict[str, Any]] = {
    "small": dict(
        base_channels=32,
        channel_mults=(1, 1, 2, 2),
        num_res_blocks=1,
        attention_levels=(3,),
        num_heads=4,
        dropout=0.0,
    ),
    "paper": dict(
        base_channels=128,
        channel_mults=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_levels=(2, 3),
        num_heads=8,
        dropout=0.1,
    ),
}


def model_config(
    variant: str, pl_channels: int, size: Literal["small", "paper"] = "small", **overrides: Any
) -> UNetConfig:
    """The architecture of one variant at one size, with optional field overrides.

    Parameters
    ----------
    variant : {"multimodal", "ebsd", "pl"}
    pl_channels : int
        Number of PL (PCA) channels C_PL of the data codec.
    size : {"small", "paper"}
    **overrides
        Any :class:`UNetConfig` field except the channel counts (e.g. ``base_channels=64``).

    Returns
    -------
    UNetConfig
    """
    if size not in _SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {tuple(_SIZES)}")
    bad = {"in_channels", "out_channels"} & set(overrides)
    if bad:
        raise ValueError(f"channel counts follow from the variant; cannot override {sorted(bad)}")
    fields_ = {**_SIZES[size], **overrides}
    return UNetConfig.from_dict({"in_channels": variant_channels(variant, pl_channels), **fields_})


def build_model(
    variant: str, pl_channels: int, size: Literal["small", "paper"] = "small", **overrides: Any
) -> UNet:
    """The denoiser for one variant; the three variants differ only in channel counts.

    Parameters
    ----------
    variant : {"multimodal", "ebsd", "pl"}
    pl_channels : int
        Number of PL (PCA) channels C_PL of the data codec.
    size : {"small", "paper"}
    **overrides
        Passed to :func:`model_config`.

    Returns
    -------
    UNet
        Maps ``(B, C, H, W)`` to ``(B, C, H, W)`` with ``C = variant_channels(variant, pl_channels)``.
    """
    return UNet(model_config(variant, pl_channels, size, **overrides))
