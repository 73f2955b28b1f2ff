"""The denoiser: shapes for every variant, input checks, time conditioning, config round trip."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ebsdray.model.unet import UNet, UNetConfig, build_model, model_config, variant_channels

PL = 5


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from 2 threads, and OpenMP threads spin badly when other jobs
    # share the 2 cores (60 s instead of 5 s measured): run these tests single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**overrides) -> UNetConfig:
    base = dict(
        in_channels=4,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_heads=2,
    )
    base.update(overrides)
    return UNetConfig(**base)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Residual branches and the output conv start at zero (net(x, t) == 0); perturb every weight
    so that the tests below can see the input and the timestep."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("variant", ["multimodal", "ebsd", "pl"])
@pytest.mark.parametrize(("batch", "h", "w"), [(1, 32, 32), (3, 16, 40)])
def test_small_variants_keep_shape(variant: str, batch: int, h: int, w: int) -> None:
    net = build_model(variant, PL, "small").eval()
    c = variant_channels(variant, PL)
    x = torch.randn(batch, c, h, w)
    with torch.inference_mode():
        out = net(x, torch.randint(0, 1000, (batch,)))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_variant_channels() -> None:
    assert variant_channels("multimodal", PL) == 3 + PL
    assert variant_channels("ebsd", PL) == 3
    assert variant_channels("pl", PL) == PL
    with pytest.raises(ValueError, match="unknown model variant"):
        variant_channels("rgb", PL)


def test_paper_size_builds_and_runs() -> None:
    net = build_model("multimodal", PL, "paper").eval()
    f = net.config.downsample_factor
    x = torch.randn(1, 3 + PL, 2 * f, 3 * f)  # the smallest non-square input it accepts
    with torch.inference_mode():
        assert net(x, torch.tensor([7])).shape == x.shape
    assert sum(p.numel() for p in net.parameters()) > 4 * sum(
        p.numel() for p in build_model("multimodal", PL, "small").parameters()
    )


def test_channel_mismatch_raises_with_counts() -> None:
    net = UNet(tiny_config(in_channels=8))
    with pytest.raises(ValueError, match=r"expected 8 channels, got 3"):
        net(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]))


def test_bad_spatial_size_and_timestep_shape_raise() -> None:
    net = UNet(tiny_config())
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.randn(1, 4, 15, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="t must be"):
        net(torch.randn(2, 4, 16, 16), torch.tensor([1, 2, 3]))


def test_fresh_net_predicts_zero_and_still_learns() -> None:
    # Zero-initialised output layers (the EDM/ADM recipe) start training at eps = 0, loss 1,
    # but only work if the gradient still reaches the layer: one step must move the output.
    net = UNet(tiny_config())
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 900])
    assert net(x, t).abs().max() == 0
    loss = (net(x, t) - torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))) ** 2
    loss.mean().backward()
    assert net.conv_out.weight.grad.abs().max() > 0
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert net(x, t).abs().max() > 0


def test_timestep_changes_output_and_scalar_t_broadcasts() -> None:
    net = randomize(UNet(tiny_config())).eval()
    x = torch.randn(2, 4, 8, 8)
    a = net(x, torch.tensor([10, 10]))
    b = net(x, torch.tensor([900, 900]))
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()
    torch.testing.assert_close(net(x, 10), a)


def test_samples_do_not_interact_across_batch() -> None:
    # GroupNorm, attention and everything else must be per sample: a sampler's particles must
    # not see each other through the network.
    net = randomize(UNet(tiny_config())).eval()
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([5, 500, 995])
    full = net(x, t)
    for i in range(3):
        torch.testing.assert_close(net(x[i : i + 1], t[i : i + 1]), full[i : i + 1])


def test_config_round_trip_rebuilds_same_architecture() -> None:
    cfg = tiny_config(out_channels=6, dropout=0.1, channel_mults=(1, 2, 2), attention_levels=(2,))
    net = randomize(UNet(cfg))
    buf = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "state": net.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    cfg2 = UNetConfig.from_dict(ckpt["config"])
    assert cfg2 == cfg
    net2 = UNet(cfg2)
    net2.load_state_dict(ckpt["state"], strict=True)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([123])
    torch.testing.assert_close(net.eval()(x, t), net2.eval()(x, t))
    assert net2(x, t).shape == (1, 6, 8, 8)


def test_config_rejects_unknown_keys_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({**tiny_config().to_dict(), "width": 3})
    with pytest.raises(ValueError, match="attention level"):
        tiny_config(attention_levels=(5,))


def test_model_config_overrides() -> None:
    cfg = model_config("pl", PL, "small", base_channels=16, dropout=0.2)
    assert cfg.in_channels == PL and cfg.base_channels == 16 and cfg.dropout == 0.2
    with pytest.raises(ValueError, match="cannot override"):
        model_config("pl", PL, "small", in_channels=3)
    with pytest.raises(ValueError, match="unknown size"):
        model_config("pl", PL, "huge")
