"""The plain training loop (no Ray): checkpoints, resume, validation, refusals."""

import json

import pytest
import torch

from ebsdray.io.checkpoint import load_checkpoint
from ebsdray.training import TrainConfig, train


@pytest.fixture
def config(tiny_train_config):
    return tiny_train_config


def test_trains_validates_and_checkpoints(config, tmp_path):
    metrics = train(config(tmp_path))
    assert metrics["step"] == 4 and metrics["val_loss"] > 0
    assert 0 <= metrics["sample_grain_coherence"] <= 1
    for name in ("last.pt", "best.pt", "metrics.json"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 4
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["variant"] == "multimodal" and ckpt["window"] == 16
    assert ckpt["train_state"]["step"] == 4
    assert ckpt["codec"]["format"] == "ebsdray-codec"
    assert (tmp_path / "figures" / "samples" / "step_0000004.png").exists()


def test_resume_continues_and_matches_an_uninterrupted_run(config, tmp_path):
    # 4 steps, then 4 more in a second call == 8 steps at once (the data and noise streams are
    # re-seeded from the step, and weights, EMA and optimizer come back from last.pt).
    train(config(tmp_path / "split", steps=4, precision="fp32"))
    halfway = load_checkpoint(tmp_path / "split" / "last.pt")["weights"]
    resumed = train(config(tmp_path / "split", steps=8, precision="fp32"))
    assert resumed["step"] == 8
    straight = train(config(tmp_path / "straight", steps=8, precision="fp32"))
    a = load_checkpoint(tmp_path / "split" / "last.pt")["weights"]
    b = load_checkpoint(tmp_path / "straight" / "last.pt")["weights"]

    def distance(u, v):
        return sum(float((u[k].float() - v[k].float()).norm() ** 2) for k in u) ** 0.5

    # Not bit-identical (a resumed run restarts the data stream at the step, not mid-stream),
    # but it continued from step 4's weights: it ends nearer the straight run than step 4 was.
    assert a.keys() == b.keys()
    assert distance(a, halfway) > 0
    assert distance(a, b) < distance(halfway, b)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=0.2)


def test_finished_run_is_not_retrained(config, tmp_path):
    train(config(tmp_path))
    before = (tmp_path / "last.pt").stat().st_mtime_ns
    metrics = train(config(tmp_path))
    assert metrics["step"] == 4
    assert (tmp_path / "last.pt").stat().st_mtime_ns == before


def test_run_dir_of_another_model_is_refused(config, tmp_path):
    train(config(tmp_path))
    with pytest.raises(ValueError, match="different model"):
        train(config(tmp_path, variant="pl"))


def test_window_must_fit_the_network(config, tmp_path):
    with pytest.raises(ValueError, match="multiple of 2"):
        train(config(tmp_path, window=15))


@pytest.mark.parametrize("variant, channels", [("ebsd", 3), ("pl", 5)])
def test_unimodal_variants(config, tmp_path, variant, channels):
    train(config(tmp_path, variant=variant, steps=2))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["model_config"]["in_channels"] == channels
    assert torch.isfinite(next(iter(ckpt["ema_weights"].values()))).all()


def test_unknown_variant_and_keys():
    with pytest.raises(ValueError, match="unknown model variant"):
        TrainConfig(name="x", variant="rgb", data_dir="/d", run_dir="/r")
    with pytest.raises(ValueError, match="lrr"):
        TrainConfig.from_dict(
            {"name": "x", "variant": "pl", "data_dir": "/d", "run_dir": "/r", "lrr": 1}
        )


def test_missing_dataset_is_named(tmp_path):
    cfg = TrainConfig(
        name="x", variant="pl", data_dir=str(tmp_path / "none"), run_dir=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match="generate_data"):
        train(cfg)
