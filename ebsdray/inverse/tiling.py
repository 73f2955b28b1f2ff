"""Denoise sections larger than the model window with overlapping tiles.

:class:`TiledDenoiser` wraps a window-sized network into a denoiser for any ``H, W >= window``:
at every call (i.e. every sampler step) it cuts ``x_t`` into overlapping ``window x window`` tiles
that cover the image (the last tile of each row/column flush with the border), evaluates all
tiles of all images in one batch (chunked), and blends the tiles' epsilon with a smooth weight.
Because the blend happens at every step, the sampler sees a single consistent epsilon field and
the result has no seams (unlike denoising tiles independently and stitching afterwards).

The weight of a tile is a separable product of 1-D profiles that rise as a raised cosine,
``sin^2(pi/2 (d + 1/2) / overlap)`` at distance d from a tile edge that faces a neighbour, to 1
inside; edges on the image border are not tapered (nothing to blend with). It is never zero, so
every pixel has positive total weight; it is smooth, so no seam appears where a tile ends; and it
is smallest at tile edges, where a tile sees the least context.

Example::

    net_big = TiledDenoiser(net, window=32, overlap=8)
    samples, info = fps_smc(net_big, sched, observation_64x96, generators)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebsdray.diffusion.schedule import Denoiser

__all__ = ["TiledDenoiser", "tile_starts"]


def tile_starts(size: int, window: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``size`` pixels with stride ``window - overlap``; the
    last tile is flush with the border (so it may overlap its neighbour more)."""
    if size < window:
        raise ValueError(f"image side {size} is smaller than the model window {window}")
    stride = window - overlap
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _profile(start: int, size: int, window: int, overlap: int) -> Tensor:
    """1-D blending weight of a tile at ``start`` on an axis of ``size`` pixels, (window,)."""
    i = torch.arange(window, dtype=torch.float64)
    w = torch.ones(window, dtype=torch.float64)
    if overlap > 0:
        # raised cosine: smooth, > 0, and two facing ramps over an overlap sum to 1
        ramp = torch.sin(0.5 * torch.pi * ((i + 0.5) / overlap).clamp(max=1.0)).square()
        if start > 0:
            w = torch.minimum(w, ramp)
        if start + window < size:
            w = torch.minimum(w, ramp.flip(0))
    return w


class TiledDenoiser(nn.Module):
    """Evaluate a window-sized denoiser on larger images by blended overlapping tiles.

    Parameters
    ----------
    net : callable ``(x_t (B, C, window, window), t (B,)) -> eps``
    window : int
        The model's training window (tile side).
    overlap : int
        Pixels shared by neighbouring tiles, ``0 <= overlap < window`` (a quarter of the window
        is a good default: the U-Net's receptive field covers the whole window anyway).
    max_batch : int
        Largest number of tiles per network call.

    Notes
    -----
    Identity wrapper when ``H = W = window`` (one tile of weight 1). Tile weights are cached per
    image size.
    """

    def __init__(
        self, net: Denoiser, window: int, overlap: int | None = None, max_batch: int = 256
    ):
        super().__init__()
        overlap = window // 4 if overlap is None else int(overlap)
        if window < 1 or not 0 <= overlap < window:
            raise ValueError(f"need window >= 1 and 0 <= overlap < window; got {window}, {overlap}")
        self.net = net  # a registered submodule when it is an nn.Module: eval() reaches it
        self.window, self.overlap = int(window), overlap
        self.max_batch = max(int(max_batch), 1)
        self._cache: dict[tuple[int, int], tuple[list, Tensor, Tensor]] = {}

    def layout(self, height: int, width: int) -> tuple[list[tuple[int, int]], Tensor, Tensor]:
        """Tile origins, per-tile weights (n, window, window) and their sum (H, W), float64."""
        key = (height, width)
        if key not in self._cache:
            rows = tile_starts(height, self.window, self.overlap)
            cols = tile_starts(width, self.window, self.overlap)
            origins, weights = [], []
            total = torch.zeros(height, width, dtype=torch.float64)
            for r in rows:
                for c in cols:
                    wr = _profile(r, height, self.window, self.overlap)
                    wc = _profile(c, width, self.window, self.overlap)
                    w = wr[:, None] * wc[None, :]
                    origins.append((r, c))
                    weights.append(w)
                    total[r : r + self.window, c : c + self.window] += w
            self._cache[key] = (origins, torch.stack(weights), total)
        return self._cache[key]

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Blended ``eps`` for (B, C, H, W) ``x_t`` and (B,) timesteps."""
        B, C, H, W = x_t.shape
        if H == self.window and W == self.window:
            return self.net(x_t, t)
        origins, weights, total = self.layout(H, W)
        n, s = len(origins), self.window
        # (B, n, C, s, s) tiles, flattened to one batch of B n tiles
        tiles = torch.stack([x_t[:, :, r : r + s, c : c + s] for r, c in origins], dim=1)
        tiles = tiles.reshape(B * n, C, s, s)
        tt = t.repeat_interleave(n)
        eps_tiles = (
            torch.cat(
                [
                    self.net(chunk, t_chunk)
                    for chunk, t_chunk in zip(
                        tiles.split(self.max_batch), tt.split(self.max_batch), strict=True
                    )
                ]
            )
            .float()
            .view(B, n, C, s, s)
        )  # blend in float32 even under bf16 autocast
        w = weights.to(x_t.device, torch.float32)
        out = torch.zeros(B, C, H, W, device=x_t.device, dtype=torch.float32)
        for k, (r, c) in enumerate(origins):
            out[:, :, r : r + s, c : c + s] += eps_tiles[:, k] * w[k]
        return (out / total.to(x_t.device, out.dtype)).to(x_t.dtype)
