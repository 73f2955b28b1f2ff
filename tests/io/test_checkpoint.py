import pytest
import torch

from ebsdray.io.checkpoint import FORMAT_VERSION, load_checkpoint, pack_weights, save_checkpoint


def minimal(**extra):
    return {
        "variant": "pl",
        "model_config": {"in_channels": 5},
        "codec": {"format": "ebsdray-codec"},
        "schedule": {"num_timesteps": 1000},
        "window": 16,
        "ema_weights": {"w": torch.ones(3)},
        **extra,
    }


def test_round_trip_loads_with_weights_only(tmp_path):
    path = save_checkpoint(minimal(weights={"w": torch.zeros(3)}), tmp_path / "m.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["format_version"] == FORMAT_VERSION
    assert torch.equal(ckpt["ema_weights"]["w"], torch.ones(3))
    # plain torch.load in safe mode works too: nothing but tensors and primitives inside
    assert torch.load(path, weights_only=True)["variant"] == "pl"
    assert not list(tmp_path.glob(".*partial*"))


def test_packed_weights_load_bit_for_bit(tmp_path):
    """A shipped model's packed EMA weights come back exactly, names, order and shapes included,
    from a file that still loads with weights_only."""
    g = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 4, 3, 3, generator=g),
        "norm.bias": torch.tensor([0.0, -0.0, 1e-38, float("inf")]),
        "t.weight": torch.randn(5, 6, generator=g).t(),  # not contiguous
        "scale": torch.tensor(2.5),
    }
    path = save_checkpoint(minimal(ema_weights=pack_weights(state)), tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["ema_weights"]["packed"].dtype == torch.uint8
    out = load_checkpoint(path)["ema_weights"]
    assert list(out) == list(state)
    for name, value in state.items():
        assert out[name].shape == value.shape and out[name].dtype == torch.float32
        assert torch.equal(out[name].view(torch.int32), value.contiguous().view(torch.int32))


def test_missing_file_names_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"jobs/train\.py"):
        load_checkpoint(tmp_path / "nope.pt")


def test_foreign_file_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable ebsdray checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ebsdray checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_other_format_version_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(minimal(), path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=f"version {FORMAT_VERSION + 1}"):
        load_checkpoint(path)


def test_incomplete_checkpoint_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="codec"):
        save_checkpoint({k: v for k, v in minimal().items() if k != "codec"}, tmp_path / "m.pt")
