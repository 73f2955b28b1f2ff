"""Tiled denoising: coverage, exactness for local networks, no seams, use inside a sampler."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.inverse.fps_smc import fps_smc, sample_generators
from ebsdray.inverse.operators import MultimodalOperator
from ebsdray.inverse.tiling import TiledDenoiser, tile_starts

WINDOW, OVERLAP = 16, 6


def pointwise(x: Tensor, t: Tensor) -> Tensor:
    """A per-pixel 'network' that still depends on t per sample."""
    return torch.tanh(x) * (1 + t.view(-1, 1, 1, 1).float() / 1000)


class ConvNet(nn.Module):
    """Translation-equivariant toy: two 3x3 convolutions (receptive radius 2), zero padding."""

    radius = 2

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, channels, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.c2(torch.tanh(self.c1(x)))


@pytest.mark.parametrize("size", [16, 17, 30, 40, 57])
def test_tile_starts_cover_and_end_flush(size: int) -> None:
    starts = tile_starts(size, WINDOW, OVERLAP)
    assert starts[0] == 0 and starts[-1] == size - WINDOW
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s : s + WINDOW] = True
    assert covered.all()
    assert all(b - a <= WINDOW - OVERLAP for a, b in itertools.pairwise(starts))


def test_tile_starts_error() -> None:
    with pytest.raises(ValueError, match="smaller than the model window"):
        tile_starts(10, WINDOW, OVERLAP)
    with pytest.raises(ValueError, match="overlap"):
        TiledDenoiser(pointwise, WINDOW, WINDOW)


def test_identity_at_window_size() -> None:
    x = torch.randn(3, 2, WINDOW, WINDOW)
    t = torch.tensor([5, 500, 999])
    assert torch.equal(TiledDenoiser(pointwise, WINDOW, OVERLAP)(x, t), pointwise(x, t))


@pytest.mark.parametrize("hw", [(16, 40), (40, 33), (57, 23)])
@pytest.mark.parametrize("max_batch", [1, 256])
def test_pointwise_network_is_seamless(hw: tuple[int, int], max_batch: int) -> None:
    # For a per-pixel network every tile predicts the same value at a pixel, so any blending
    # error (weights not normalized, tiles misplaced, seams) shows up as a difference.
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 900])
    out = TiledDenoiser(pointwise, WINDOW, OVERLAP, max_batch=max_batch)(x, t)
    torch.testing.assert_close(out, pointwise(x, t), atol=1e-6, rtol=1e-6)


def test_weights_positive_and_sum_covers_image() -> None:
    tiled = TiledDenoiser(pointwise, WINDOW, OVERLAP)
    origins, weights, total = tiled.layout(40, 33)
    assert (weights > 0).all() and (total > 0).all()
    assert len(origins) == len(tile_starts(40, WINDOW, OVERLAP)) * len(
        tile_starts(33, WINDOW, OVERLAP)
    )


def _uniform_blend(net: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    """Independent tiles averaged with equal weights: the seam-prone reference."""
    H, W = x.shape[-2:]
    out, count = torch.zeros_like(x), torch.zeros(H, W)
    for r in tile_starts(H, WINDOW, OVERLAP):
        for c in tile_starts(W, WINDOW, OVERLAP):
            out[..., r : r + WINDOW, c : c + WINDOW] += net(
                x[..., r : r + WINDOW, c : c + WINDOW], t
            )
            count[r : r + WINDOW, c : c + WINDOW] += 1
    return out / count


def test_conv_network_matches_full_image_away_from_tile_edges() -> None:
    net = ConvNet()
    H, W = 40, 33
    x = torch.randn(1, 2, H, W, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([100])
    with torch.no_grad():
        full = net(x, t)
        tiled = TiledDenoiser(net, WINDOW, OVERLAP)(x, t)
        uniform = _uniform_blend(net, x, t)
    # Pixels that every covering tile sees at least `radius` away from its edges facing a
    # neighbour (edges on the image border are zero-padded in both) must be exact.
    exact = torch.ones(H, W, dtype=torch.bool)
    r = ConvNet.radius
    for top in tile_starts(H, WINDOW, OVERLAP):
        for left in tile_starts(W, WINDOW, OVERLAP):
            inner = torch.zeros(H, W, dtype=torch.bool)
            y0 = top + r if top > 0 else 0
            y1 = top + WINDOW - r if top + WINDOW < H else H
            x0 = left + r if left > 0 else 0
            x1 = left + WINDOW - r if left + WINDOW < W else W
            inner[y0:y1, x0:x1] = True
            tile = torch.zeros(H, W, dtype=torch.bool)
            tile[top : top + WINDOW, left : left + WINDOW] = True
            exact &= ~tile | inner
    assert exact.float().mean() > 0.5
    torch.testing.assert_close(tiled[..., exact], full[..., exact], atol=1e-5, rtol=0)
    # Elsewhere the tapered weights keep the edge error far below equal-weight blending.
    err, err_uniform = (tiled - full).abs().max(), (uniform - full).abs().max()
    assert err_uniform > 0.05
    assert err < 0.3 * err_uniform


def test_eval_mode_reaches_the_wrapped_module() -> None:
    net = ConvNet()
    tiled = TiledDenoiser(net, WINDOW, OVERLAP)
    tiled.train()
    assert net.training
    tiled.eval()
    assert not net.training


def test_sampler_runs_on_a_larger_section() -> None:
    sched = DiffusionSchedule()
    x = torch.rand(2, 24, 21, generator=torch.Generator().manual_seed(0)) * 2 - 1
    obs = MultimodalOperator(1, ebsd_channels=1, pattern="random", ebsd_fraction=0.5).observe(x, 0)
    net = ConvNet()
    samples, _ = fps_smc(
        TiledDenoiser(net, WINDOW, OVERLAP),
        sched,
        obs,
        sample_generators(0, 0, range(2)),
        num_steps=4,
        particles=2,
    )
    assert samples.shape == (2, 2, 24, 21) and torch.isfinite(samples).all()
    assert net.training  # the sampler restores the mode it found
