"""Observation operators for the multimodal inpainting problem ``y = m * (x + n)``.

``x`` is a section in network channels ``[ebsd(E) | pl(P)]`` (``(C, H, W)``, C = E + P, every
channel scaled to [-1, 1] by the codec), ``m`` a per-channel 0/1 mask and ``n`` Gaussian noise with
one standard deviation per modality, in those normalized channel units. EBSD is observed on a
pattern of pixels (all E channels of a pixel together); PL is fully observed:

=========  ==========================================================================
pattern    observed EBSD pixels
=========  ==========================================================================
``grid``   every s-th row and column (rows/cols ``offset, offset + s, ...``): 1/s^2
``random`` ``round(fraction * H * W)`` pixels drawn without replacement (seeded)
``none``   none: the EBSD modality is missing (fraction 0)
=========  ==========================================================================

Fraction 1 means fully observed and fraction 0 means missing for every pattern, so a sweep over
fractions ``[1, 1/4, 1/16, 0]`` needs no special case. Corrupted PL (scratches, illumination,
misregistration from :mod:`ebsdray.data.corruptions`) is applied to raw intensities before the
codec; pass the encoded result as the PL channels of ``x`` and set ``pl_noise`` to the noise
level the sampler should assume.

Example::

    op = MultimodalOperator(pl_channels=5, pattern="grid", ebsd_fraction=1 / 4, pl_noise=0.05)
    obs = op.observe(x, generator=torch.Generator().manual_seed(0))   # x: (8, 32, 32)
    obs_ebsd = obs.for_variant("ebsd")                                 # for the EBSD-only model
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from ebsdray.conventions import EBSD_CHANNELS, VARIANTS, ChannelLayout

__all__ = ["PATTERNS", "VARIANTS", "MultimodalOperator", "Observation", "grid_fractions"]

PATTERNS = ("grid", "random", "none")
Pattern = Literal["grid", "random", "none"]


def grid_fractions(height: int, width: int) -> list[float]:
    """EBSD fractions a ``grid`` pattern can realize on an ``height x width`` section: 1/s^2
    for every s that divides both sides."""
    return [
        1.0 / s**2 for s in range(1, min(height, width) + 1) if height % s == 0 and width % s == 0
    ]


def _fraction_text(f: float) -> str:
    s = round(1.0 / math.sqrt(f))
    return "1" if s == 1 else f"1/{s * s}"


def _grid_step(fraction: float, height: int, width: int) -> int:
    """The s with 1/s^2 == fraction that divides the section, or a ValueError saying what works."""
    s = round(1.0 / math.sqrt(fraction))
    possible = ", ".join(_fraction_text(f) for f in grid_fractions(height, width))
    if not math.isclose(fraction, 1.0 / s**2, rel_tol=1e-6):
        raise ValueError(
            f"ebsd_fraction={fraction:g} is not 1/s^2 for an integer s, so the grid pattern cannot "
            f"realize it; fractions possible on a {height}x{width} section: {possible} "
            "(or use pattern='random')"
        )
    if height % s or width % s:
        raise ValueError(
            f"grid step s={s} (ebsd_fraction=1/{s * s}) does not divide the {height}x{width} "
            f"section; fractions possible here: {possible} (or crop the section, or use "
            "pattern='random')"
        )
    return s


@dataclass(frozen=True)
class Observation:
    """One observed section: the measurement, its mask and noise, and the channel layout.

    Attributes
    ----------
    y : (C, H, W) float32 tensor
        ``m * (x + n)``: zero wherever the mask is zero.
    mask : (C, H, W) float32 tensor of 0/1
        1 where the entry is observed.
    sigma : (C,) float32 tensor
        Noise standard deviation of each channel in normalized units (0 allowed; samplers that
        need a positive value apply their own floor).
    ebsd_channels, pl_channels : int
        Layout ``[ebsd | pl]``; ``ebsd_channels + pl_channels == C``.
    pattern : str
        "grid", "random", "none", or "custom" for a hand-built mask.
    ebsd_fraction : float
        The requested EBSD fraction (see :attr:`realized_ebsd_fraction` for what the mask holds).
    grid_step : int or None
        s of a grid pattern.
    """

    y: Tensor
    mask: Tensor
    sigma: Tensor
    ebsd_channels: int
    pl_channels: int
    pattern: str = "custom"
    ebsd_fraction: float = float("nan")
    grid_step: int | None = None

    def __post_init__(self) -> None:
        y, m, s = self.y, self.mask, self.sigma
        if y.ndim != 3:
            raise ValueError(f"y must be (C, H, W); got shape {tuple(y.shape)}")
        if m.shape != y.shape:
            raise ValueError(f"mask {tuple(m.shape)} must have the shape of y {tuple(y.shape)}")
        if s.shape != (y.shape[0],):
            raise ValueError(f"sigma must be (C,) = ({y.shape[0]},); got {tuple(s.shape)}")
        if self.ebsd_channels < 0 or self.pl_channels < 0:
            raise ValueError("channel counts must be >= 0")
        if self.ebsd_channels + self.pl_channels != y.shape[0]:
            raise ValueError(
                f"y has {y.shape[0]} channels but the layout says {self.ebsd_channels} EBSD + "
                f"{self.pl_channels} PL"
            )
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must hold only 0 and 1")
        if not bool(torch.isfinite(y).all()) or not bool(torch.isfinite(s).all()):
            raise ValueError("y and sigma must be finite")
        if bool((s < 0).any()):
            raise ValueError("sigma must be >= 0")

    # --- views ---------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.y.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.y.shape)  # type: ignore[return-value]

    @property
    def variant(self) -> str:
        """The model variant these channels feed: "multimodal", "ebsd" or "pl"."""
        if self.ebsd_channels and self.pl_channels:
            return "multimodal"
        return "ebsd" if self.ebsd_channels else "pl"

    @property
    def noise_std(self) -> Tensor:
        """(C, H, W) per-entry noise standard deviation (sigma broadcast over pixels)."""
        return self.sigma.view(-1, 1, 1).expand_as(self.y)

    @property
    def ebsd_mask(self) -> Tensor:
        """(H, W) bool: pixels whose EBSD is observed (all False when there is no EBSD)."""
        if not self.ebsd_channels:
            return torch.zeros(self.y.shape[1:], dtype=torch.bool, device=self.y.device)
        return self.mask[: self.ebsd_channels].amax(0) > 0

    @property
    def realized_ebsd_fraction(self) -> float:
        """Share of pixels whose EBSD is observed."""
        return int(self.ebsd_mask.sum()) / self.ebsd_mask.numel() if self.ebsd_channels else 0.0

    def to(self, device: torch.device | str) -> Observation:
        """The same observation with its tensors on ``device``."""
        return replace(
            self, y=self.y.to(device), mask=self.mask.to(device), sigma=self.sigma.to(device)
        )

    def for_variant(self, variant: str) -> Observation:
        """The observation seen by one model variant (channel subset, same pixels).

        Parameters
        ----------
        variant : {"multimodal", "ebsd", "pl"}

        Returns
        -------
        Observation with ``ebsd_channels`` (E, H, W) for "ebsd", ``pl_channels`` for "pl",
        everything for "multimodal".
        """
        e, p = self.ebsd_channels, self.pl_channels
        wanted = ChannelLayout(variant, p)
        if wanted.has_ebsd and wanted.has_pl:
            if not (e and p):
                raise ValueError(
                    f"a multimodal model needs EBSD and PL channels; this observation has {e} "
                    f"EBSD and {p} PL channels"
                )
            return self
        sl = slice(0, e) if wanted.has_ebsd else slice(e, e + p)
        if sl.stop == sl.start:
            raise ValueError(f"this observation has no {variant.upper()} channels")
        return replace(
            self,
            y=self.y[sl],
            mask=self.mask[sl],
            sigma=self.sigma[sl],
            ebsd_channels=e if wanted.has_ebsd else 0,
            pl_channels=p if wanted.has_pl else 0,
        )


@dataclass(frozen=True)
class MultimodalOperator:
    """Mask + noise operator ``y = m * (x + n)`` for sections with channels ``[ebsd | pl]``.

    Parameters
    ----------
    pl_channels : int
        C_PL of the codec (0 for an EBSD-only problem).
    pattern : {"grid", "random", "none"}
        EBSD sampling pattern (module docstring).
    ebsd_fraction : float in [0, 1]
        Share of observed EBSD pixels; 1/s^2 for "grid"; 0 for "none". 0 and 1 mean missing and
        fully observed for every pattern.
    ebsd_noise, pl_noise : float >= 0
        Noise standard deviation of EBSD / PL entries in normalized channel units.
    ebsd_channels : int
        3 (cubochoric); 0 for a PL-only problem.
    grid_offset : int
        Row/column of the first grid point (must be < s).
    """

    pl_channels: int
    pattern: Pattern = "grid"
    ebsd_fraction: float = 0.25
    ebsd_noise: float = 0.01
    pl_noise: float = 0.05
    ebsd_channels: int = EBSD_CHANNELS
    grid_offset: int = 0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown EBSD pattern {self.pattern!r}; expected one of {PATTERNS}")
        f = self.ebsd_fraction
        if not (isinstance(f, int | float) and math.isfinite(f) and 0.0 <= f <= 1.0):
            raise ValueError(
                f"ebsd_fraction must be a number in [0, 1] (0 = EBSD missing, 1 = full); got {f!r}"
            )
        if self.pattern == "none" and f != 0:
            raise ValueError(
                f"pattern='none' means EBSD is missing, so ebsd_fraction must be 0; got {f:g} "
                "(use pattern='grid' or 'random' for a partial EBSD map)"
            )
        for name in ("ebsd_noise", "pl_noise"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite std >= 0; got {v!r}")
        if self.ebsd_channels < 0 or self.pl_channels < 0 or self.channels == 0:
            raise ValueError("need ebsd_channels >= 0, pl_channels >= 0 and at least one channel")
        if self.grid_offset < 0:
            raise ValueError("grid_offset must be >= 0")

    @property
    def channels(self) -> int:
        return self.ebsd_channels + self.pl_channels

    @property
    def sigma(self) -> Tensor:
        """(C,) per-channel noise std."""
        return torch.tensor(
            [self.ebsd_noise] * self.ebsd_channels + [self.pl_noise] * self.pl_channels,
            dtype=torch.float32,
        )

    def _effective(self) -> str:
        if self.ebsd_fraction == 0 or self.ebsd_channels == 0:
            return "none"
        return "full" if self.ebsd_fraction == 1 else self.pattern

    def pixel_mask(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, int | None]:
        """(H, W) bool EBSD pixel mask and the grid step (None unless a grid).

        ``generator`` is used only by the random pattern (drawn on its device, returned on the
        CPU).
        """
        kind = self._effective()
        if kind == "none":
            return torch.zeros(height, width, dtype=torch.bool), None
        if kind == "full":
            return torch.ones(
                height, width, dtype=torch.bool
            ), 1 if self.pattern == "grid" else None
        if kind == "grid":
            s = _grid_step(self.ebsd_fraction, height, width)
            if self.grid_offset >= s:
                raise ValueError(f"grid_offset={self.grid_offset} must be < the grid step {s}")
            pix = torch.zeros(height, width, dtype=torch.bool)
            pix[self.grid_offset :: s, self.grid_offset :: s] = True
            return pix, s
        n = round(self.ebsd_fraction * height * width)
        dev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(height * width, generator=generator, device=dev)[:n].cpu()
        pix = torch.zeros(height * width, dtype=torch.bool)
        pix[idx] = True
        return pix.view(height, width), None

    def mask(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        """(C, H, W) float 0/1 channel mask: EBSD channels on the pattern, PL channels all 1."""
        pix, _ = self.pixel_mask(height, width, generator)
        return self._channel_mask(pix)

    def _channel_mask(self, pix: Tensor) -> Tensor:
        e, p = self.ebsd_channels, self.pl_channels
        return torch.cat(
            [pix.float().expand(e, *pix.shape), torch.ones(p, *pix.shape)], dim=0
        ).contiguous()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Noise-free measurement ``m * x`` for (..., C, H, W) ``x``."""
        return x * mask.to(x.device, x.dtype)

    __call__ = forward

    def observe(
        self,
        x: Tensor,
        generator: torch.Generator | int | None = None,
        *,
        valid_ebsd: Tensor | None = None,
    ) -> Observation:
        """Simulate a measurement of a clean section.

        Parameters
        ----------
        x : (C, H, W) tensor
            Clean channels ``[ebsd | pl]`` (PL may already carry corruptions, see module doc).
        generator : torch.Generator, int or None
            Randomness of the mask (random pattern, drawn first) and of the noise; an int seeds a
            fresh CPU generator. Same generator state -> same observation.
        valid_ebsd : (H, W) bool tensor, optional
            Pixels whose EBSD is usable (unindexed pixels: False); they are never observed. x may
            hold NaN at entries that end up unobserved.

        Returns
        -------
        Observation on ``x``'s device.
        """
        if not isinstance(x, Tensor) or x.ndim != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a (C, H, W) tensor; got {shape}")
        if x.shape[0] != self.channels:
            raise ValueError(
                f"x has {x.shape[0]} channels but the operator expects {self.ebsd_channels} EBSD "
                f"+ {self.pl_channels} PL = {self.channels}; build the operator with the "
                "codec's pl_channels (or select the variant's channels)"
            )
        g = generator
        if g is None or isinstance(g, int):
            g = torch.Generator().manual_seed(0 if g is None else int(g))
        h, w = x.shape[1:]
        pix, step = self.pixel_mask(h, w, g)
        if valid_ebsd is not None:
            if valid_ebsd.shape != (h, w):
                raise ValueError(
                    f"valid_ebsd must be (H, W) = ({h}, {w}); got {tuple(valid_ebsd.shape)}"
                )
            pix = pix & valid_ebsd.bool().cpu()
        m = self._channel_mask(pix).to(x.device)
        obs = m > 0
        bad = ~torch.isfinite(x) & obs
        if bool(bad.any()):
            chans = sorted({int(c) for c in bad.nonzero()[:, 0].tolist()})
            raise ValueError(
                f"x has NaN or inf at {int(bad.sum())} observed entries (channels {chans}); pass "
                "valid_ebsd to exclude unindexed EBSD pixels, or clean the input"
            )
        sigma = self.sigma
        n = torch.randn(x.shape, generator=g, device=g.device).to(x.device, torch.float32)
        xf = torch.where(obs, x.float(), torch.zeros((), device=x.device))
        y = m * (xf + sigma.to(x.device).view(-1, 1, 1) * n)
        return Observation(
            y=y,
            mask=m,
            sigma=sigma.to(x.device),
            ebsd_channels=self.ebsd_channels,
            pl_channels=self.pl_channels,
            pattern=self.pattern,
            ebsd_fraction=float(self.ebsd_fraction),
            grid_step=step,
        )
