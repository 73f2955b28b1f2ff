"""The plain training loop (no Ray): checkpoints, resume, validation, refusals."""

import itertools
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


def test_fine_tuning_starts_from_the_named_weights(config, tmp_path):
    train(config(tmp_path / "base", precision="fp32"))
    source = load_checkpoint(tmp_path / "base" / "best.pt")
    # lr = 0: the network cannot move, so what it holds after a step is what it started from.
    train(config(tmp_path / "tuned", steps=1, lr=0.0, init_from=str(tmp_path / "base" / "best.pt")))
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert tuned["train_state"]["step"] == 1
    for k, v in source["weights"].items():
        assert torch.equal(tuned["weights"][k], v), k
    # The EMA starts at the source's sampling weights and moves one (1 - decay) step from them.
    for k, v in source["ema_weights"].items():
        if v.is_floating_point():
            assert torch.allclose(tuned["ema_weights"][k], v, atol=1e-2 * float(v.abs().max()))


def test_fine_tuning_refuses_another_model_or_a_missing_file(config, tmp_path):
    train(config(tmp_path / "pl", variant="pl", steps=2))
    with pytest.raises(ValueError, match="fine-tune only a model of this variant"):
        train(config(tmp_path / "mm", init_from=str(tmp_path / "pl" / "best.pt")))
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(config(tmp_path / "mm2", init_from=str(tmp_path / "absent.pt")))


def test_cosine_schedule_warms_up_then_decays_to_its_final_rate():
    cfg = TrainConfig(
        name="x",
        variant="pl",
        data_dir="/d",
        run_dir="/r",
        steps=100,
        lr=1e-3,
        warmup_steps=10,
        lr_schedule="cosine",
        lr_final=1e-5,
    )
    assert cfg.learning_rate(0) == pytest.approx(1e-4)
    assert cfg.learning_rate(10) == pytest.approx(1e-3)
    assert cfg.learning_rate(55) == pytest.approx((1e-3 + 1e-5) / 2)
    assert cfg.learning_rate(100) == pytest.approx(1e-5)
    rates = [cfg.learning_rate(s) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert (
        TrainConfig(name="x", variant="pl", data_dir="/d", run_dir="/r").learning_rate(900) == 3e-4
    )
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(name="x", variant="pl", data_dir="/d", run_dir="/r", lr_schedule="step")
