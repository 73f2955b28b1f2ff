"""The sweep's plans, composed by real Hydra from configs/sweep.yaml: sizes, which models get which
fractions, baselines once per observation, and errors named before any compute."""

from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ebsdray.experiments.plan import BASELINES, expand_plan

ROOT = Path(__file__).resolve().parents[2]


def composed(*overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sweep", overrides=[f"paths.root={ROOT / 'unused'}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def expand(config):
    return expand_plan(config["plan"], config["volumes"], config["pl_settings"], config["models"])


def samples_drawn(config, configs):
    """Posterior samples a plan draws (largest K per section of every model configuration)."""
    sections = {n: int(v.get("sections", 1)) for n, v in config["volumes"].items()}
    kmax = max(config["plan"]["samples"])
    return sum(kmax * sections[c.volume] for c in configs if c.model != BASELINES)


@pytest.mark.parametrize("size", ["smoke", "default", "full"])
def test_every_size_follows_the_rules(size):
    config = composed(f"size={size}")
    assert config["plan"]["name"] == size
    assert config["output_dir"].endswith(f"sweeps/{size}")
    configs = expand(config)
    assert len(configs) == len(set(configs))
    for c in configs:
        if c.fraction == 0:
            assert c.pattern == "none"
        if c.fraction == 1:
            assert c.pattern == "grid"
        if c.model == "pl":
            assert c.fraction == 0  # it sees no EBSD
        if c.model == "ebsd":
            assert c.fraction > 0 and c.pl == "none"  # it sees no PL
    models = [c for c in configs if c.model != BASELINES]
    observations = {c.observation_key() for c in models}
    baselines = [c.observation_key() for c in configs if c.model == BASELINES]
    assert sorted(baselines) == sorted(observations)  # once each


def test_full_is_the_whole_grid():
    config = composed("size=full")
    configs = [c for c in expand(config) if c.model != BASELINES]
    per_unit = Counter((c.volume, c.seed) for c in configs)
    # multimodal: (4 fractions x 2 patterns - 1 random at full + fraction 0) x 4 PL settings;
    # PL model: fraction 0 x 4 PL settings; EBSD model: 4 fractions x 2 patterns - 1, PL none
    assert set(per_unit.values()) == {8 * 4 + 4 + 7}
    assert len(per_unit) == 3 * 5  # volumes x seeds
    assert max(config["plan"]["samples"]) == 16
    assert config["cluster"] == "auto" and config["replica"]["num_gpus"] == 1


def test_smoke_and_default_sizes_stay_within_their_budgets():
    # ~1.5 s per 64 x 64 sample, 2.4 s at 96 x 96 on 2 cores: smoke a few minutes, default
    # about 20 min of sampling; a preset that grows past these must say so here.
    smoke, default = composed("size=smoke"), composed("size=default")
    assert samples_drawn(smoke, expand(smoke)) <= 150
    assert samples_drawn(default, expand(default)) <= 720
    assert max(smoke["plan"]["samples"]) == 4 and max(default["plan"]["samples"]) == 8
    assert {c.model for c in expand(default)} == {"multimodal", "pl", "ebsd", BASELINES}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["blocks"]["fraction"].update(fractions=[0.1]), "1/9"),
        (lambda p: p["blocks"]["fraction"].update(fractions=[2]), r"not in \[0, 1\]"),
        (lambda p: p["blocks"]["fraction"].update(models=["diffusion"]), "unknown models"),
        (lambda p: p["blocks"]["fraction"].update(pl=["fog"]), "unknown pl"),
        (lambda p: p["blocks"]["fraction"].update(fractoins=[0]), "unknown keys"),
        (lambda p: p.update(samples=[0, 4]), "positive"),
    ],
)
def test_bad_plans_are_named(change, message):
    config = composed("size=smoke")
    change(config["plan"])
    with pytest.raises(ValueError, match=message):
        expand(config)
