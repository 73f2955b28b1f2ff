"""Observation operators: every pattern, mask algebra, realized fractions, noise, errors."""

from __future__ import annotations

import math

import pytest
import torch

from ebsdray.inverse.operators import MultimodalOperator, Observation, grid_fractions

C_PL = 5
H, W = 24, 32
CASES = [
    ("grid", 1.0),
    ("grid", 1 / 4),
    ("grid", 1 / 16),
    ("random", 0.3),
    ("random", 1.0),
    ("random", 0.0),
    ("none", 0.0),
]


def clean(seed: int = 0, c: int = 3 + C_PL) -> torch.Tensor:
    return torch.rand(c, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(params=CASES, ids=[f"{p}-{f:.3g}" for p, f in CASES])
def op(request) -> MultimodalOperator:
    pattern, fraction = request.param
    return MultimodalOperator(C_PL, pattern=pattern, ebsd_fraction=fraction, pl_noise=0.05)


def test_shapes_and_layout(op: MultimodalOperator) -> None:
    obs = op.observe(clean(), 1)
    assert obs.y.shape == obs.mask.shape == (3 + C_PL, H, W)
    assert obs.sigma.shape == (3 + C_PL,)
    assert obs.y.dtype == obs.mask.dtype == torch.float32
    assert (obs.ebsd_channels, obs.pl_channels, obs.variant) == (3, C_PL, "multimodal")
    assert obs.noise_std.shape == obs.y.shape
    assert obs.sigma[:3].tolist() == pytest.approx([op.ebsd_noise] * 3)
    assert obs.sigma[3:].tolist() == pytest.approx([0.05] * C_PL)


def test_mask_idempotent_and_binary(op: MultimodalOperator) -> None:
    m = op.mask(H, W, torch.Generator().manual_seed(3))
    x = clean()
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(m * m, m)
    torch.testing.assert_close(op(op(x, m), m), op(x, m))


def test_channel_masks(op: MultimodalOperator) -> None:
    obs = op.observe(clean(), 2)
    ebsd, pl = obs.mask[:3], obs.mask[3:]
    assert (ebsd == ebsd[:1]).all(), "all EBSD channels of a pixel are observed together"
    assert (pl == 1).all(), "PL is fully observed"
    torch.testing.assert_close(obs.ebsd_mask, ebsd[0] > 0)


def test_fraction_realized(op: MultimodalOperator) -> None:
    obs = op.observe(clean(), 4)
    expected = round(op.ebsd_fraction * H * W) / (H * W)
    assert obs.realized_ebsd_fraction == pytest.approx(expected, abs=1e-9)
    if op.pattern == "grid" and 0 < op.ebsd_fraction:
        s = round(1 / math.sqrt(op.ebsd_fraction))
        assert obs.grid_step == s
        expected_pix = torch.zeros(H, W, dtype=torch.bool)
        expected_pix[::s, ::s] = True
        assert torch.equal(obs.ebsd_mask, expected_pix)


def test_noise_only_on_observed_entries(op: MultimodalOperator) -> None:
    x = clean(5)
    obs = op.observe(x, 6)
    assert (obs.y[obs.mask == 0] == 0).all()
    n = (obs.y - x)[3:]  # PL: 5 * 24 * 32 draws, sd of the sd estimate ~1%
    assert n.std().item() == pytest.approx(0.05, rel=0.06)
    noiseless = MultimodalOperator(
        C_PL, op.pattern, op.ebsd_fraction, ebsd_noise=0.0, pl_noise=0.0
    ).observe(x, 6)
    torch.testing.assert_close(noiseless.y, x * noiseless.mask)


def test_deterministic_from_seed(op: MultimodalOperator) -> None:
    x = clean()
    a, b = op.observe(x, 7), op.observe(x, torch.Generator().manual_seed(7))
    assert torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
    c = op.observe(x, 8)
    assert not torch.equal(a.y, c.y)


def test_for_variant(op: MultimodalOperator) -> None:
    obs = op.observe(clean(), 9)
    pl = obs.for_variant("pl")
    assert pl.shape == (C_PL, H, W) and pl.variant == "pl"
    torch.testing.assert_close(pl.y, obs.y[3:])
    if op.ebsd_fraction == 0:
        assert obs.realized_ebsd_fraction == 0
    ebsd = obs.for_variant("ebsd")
    assert ebsd.shape == (3, H, W) and ebsd.variant == "ebsd"
    torch.testing.assert_close(ebsd.mask, obs.mask[:3])
    assert obs.for_variant("multimodal") is obs
    with pytest.raises(ValueError, match="no PL channels"):
        ebsd.for_variant("pl")
    with pytest.raises(ValueError, match="needs EBSD and PL"):
        pl.for_variant("multimodal")
    with pytest.raises(ValueError, match="unknown model variant"):
        obs.for_variant("both")


def test_random_pattern_differs_by_seed_but_not_by_noise_level() -> None:
    a = MultimodalOperator(C_PL, "random", 0.25).observe(clean(), 1)
    b = MultimodalOperator(C_PL, "random", 0.25, pl_noise=0.2).observe(clean(), 1)
    c = MultimodalOperator(C_PL, "random", 0.25).observe(clean(), 2)
    assert torch.equal(a.mask, b.mask)  # the mask is drawn before the noise
    assert not torch.equal(a.mask, c.mask)


def test_valid_pixels_and_nans() -> None:
    x = clean()
    valid = torch.ones(H, W, dtype=torch.bool)
    valid[0, 0] = False
    x[:3, 0, 0] = float("nan")  # an unindexed pixel on the grid
    op = MultimodalOperator(C_PL, "grid", 1 / 4)
    obs = op.observe(x, 0, valid_ebsd=valid)
    assert obs.mask[:3, 0, 0].sum() == 0 and torch.isfinite(obs.y).all()
    with pytest.raises(ValueError, match=r"NaN or inf at 3 observed entries.*valid_ebsd"):
        op.observe(x, 0)
    x2 = clean()
    x2[4, 1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"channels \[4\]"):
        op.observe(x2, 0)


def test_grid_fractions() -> None:
    assert grid_fractions(32, 32) == [1, 1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 1024]
    assert grid_fractions(24, 32) == [1, 1 / 4, 1 / 16, 1 / 64]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ebsd_fraction=-0.1), r"in \[0, 1\]"),
        (dict(ebsd_fraction=1.5), r"in \[0, 1\]"),
        (dict(ebsd_fraction=float("nan")), r"in \[0, 1\]"),
        (dict(pattern="checkerboard"), "unknown EBSD pattern"),
        (dict(pattern="none", ebsd_fraction=0.5), "must be 0"),
        (dict(pl_noise=-1.0), "pl_noise"),
    ],
)
def test_operator_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MultimodalOperator(C_PL, **kwargs)


def test_grid_errors_say_what_is_possible() -> None:
    with pytest.raises(ValueError, match=r"not 1/s\^2.*1, 1/4, 1/16, 1/64"):
        MultimodalOperator(C_PL, "grid", 0.3).observe(clean(), 0)
    with pytest.raises(ValueError, match=r"s=3 .*does not divide the 24x32.*1/4"):
        MultimodalOperator(C_PL, "grid", 1 / 9).observe(clean(), 0)


def test_input_errors() -> None:
    op = MultimodalOperator(C_PL)
    with pytest.raises(ValueError, match=r"7 channels but the operator expects 3 EBSD \+ 5 PL"):
        op.observe(clean(c=7), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        op.observe(clean()[None], 0)
    with pytest.raises(ValueError, match="valid_ebsd"):
        op.observe(clean(), 0, valid_ebsd=torch.ones(3, 3, dtype=torch.bool))


def test_observation_validation() -> None:
    y, m, s = torch.zeros(2, 4, 4), torch.ones(2, 4, 4), torch.zeros(2)
    Observation(y, m, s, 1, 1)
    with pytest.raises(ValueError, match="layout"):
        Observation(y, m, s, 3, 1)
    with pytest.raises(ValueError, match="mask"):
        Observation(y, m[:1], s, 1, 1)
    with pytest.raises(ValueError, match="0 and 1"):
        Observation(y, m * 0.5, s, 1, 1)
    with pytest.raises(ValueError, match="finite"):
        Observation(y * float("nan"), m, s, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        Observation(y, m, -torch.ones(2), 1, 1)
