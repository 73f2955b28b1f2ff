"""Loading trained models: by path, exported for shipping, refusals with clear messages."""

import pytest
import torch
import yaml

from ebsdray.diffusion import pretrained
from ebsdray.diffusion.pretrained import export_model, load_model
from ebsdray.io.checkpoint import load_checkpoint, save_checkpoint
from ebsdray.training import train


@pytest.fixture(scope="module")
def trained(tiny_train_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_train_config(run_dir, steps=2, val_windows=4, sample_count=0))
    return run_dir / "best.pt"


def test_load_by_path_gives_a_ready_denoiser(trained):
    model = load_model(trained)
    assert model.variant == "multimodal" and model.channels == 3 + model.codec.pl_channels
    assert model.window == 16 and model.source == str(trained)
    assert not model.net.training
    x = torch.randn(2, model.channels, 16, 16)
    eps = model(x, torch.tensor([10, 500]))
    assert eps.shape == x.shape and not eps.requires_grad


def test_export_is_slim_and_loads_the_same_ema_weights(trained, tmp_path):
    dest = export_model(trained, tmp_path / "multimodal.pt", {"trained_on": "test"})
    slim = load_checkpoint(dest)
    assert "train_state" not in slim and "weights" not in slim
    assert slim["provenance"]["trained_on"] == "test" and slim["provenance"]["step"] == 2
    card = yaml.safe_load(dest.with_suffix(".yaml").read_text())
    assert card["train_config"]["variant"] == "multimodal"
    x = torch.randn(1, 8, 16, 16)
    t = torch.tensor([300])
    assert torch.equal(load_model(dest)(x, t), load_model(trained)(x, t))


def test_wrong_variant_refused(trained):
    with pytest.raises(ValueError, match="'pl' model is needed"):
        load_model(trained, variant="pl")


def test_channel_count_that_does_not_fit_the_codec_is_refused(trained, tmp_path):
    ckpt = load_checkpoint(trained)
    ckpt["variant"] = "ebsd"  # 3 channels expected, the network has 8
    path = save_checkpoint(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must have 3 channels"):
        load_model(path)


def test_missing_checkpoint_and_unknown_name(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "none.pt")
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped 'pl' weights are missing"):
        load_model("pl")
