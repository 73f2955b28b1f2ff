"""Shared fixtures: one real local Ray cluster for the whole session, tiny generated datasets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs, started once and shut down at the end."""
    import ray

    from ebsdray.distributed.cluster import connect

    connect("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def listening_addresses():
    """``listening_addresses(pid) -> {"ip:port": [process names]}`` for pid's process tree."""
    sys.path.insert(0, str(TESTS))
    from listening import listening_addresses

    return listening_addresses


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dataset directory with two small training volumes and one validation volume."""
    from ebsdray.dataset_dir import generate_dataset

    data_dir = tmp_path_factory.mktemp("data")
    config = {
        "splits": {
            "train": [
                {"name": "a", "seed": 1, "shape": [8, 40, 40], "grain_size": 8},
                {
                    "name": "b",
                    "seed": 2,
                    "shape": [8, 40, 40],
                    "grain_size": 8,
                    "texture": {"kind": "fibre", "spread_deg": 15},
                },
            ],
            "val": [{"name": "v", "seed": 3, "shape": [8, 32, 32], "grain_size": 8}],
        },
        "stage_angles": 36,
        "codec": {"pixels": 20000},
    }
    generate_dataset(config, data_dir)
    return data_dir


# A network small enough that a training step takes milliseconds.
TINY_ARCHITECTURE = {
    "base_channels": 16,
    "channel_mults": [1, 2],
    "num_res_blocks": 1,
    "attention_levels": [1],
    "num_heads": 2,
}


@pytest.fixture(scope="session")
def tiny_train_config(tiny_dataset):
    """Factory: a TrainConfig for a seconds-long run on the tiny dataset; keywords override."""
    from ebsdray.training import TrainConfig

    def make(run_dir, **overrides) -> TrainConfig:
        base = {
            "name": "tiny",
            "variant": "multimodal",
            "data_dir": str(tiny_dataset),
            "run_dir": str(run_dir),
            "architecture": TINY_ARCHITECTURE,
            "window": 16,
            "batch_size": 4,
            "steps": 4,
            "val_interval": 2,
            "val_windows": 8,
            "sample_count": 2,
            "sample_steps": 3,
            "log_interval": 2,
            "warmup_steps": 1,
            "lr": 1e-3,
        }
        return TrainConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_models(tiny_train_config, tmp_path_factory):
    """Tiny trained models of the three variants: ``{variant: (DiffusionModel, checkpoint)}``."""
    import ebsdray
    from ebsdray.training import train

    out = {}
    for variant in ("multimodal", "pl", "ebsd"):
        run = tmp_path_factory.mktemp(variant)
        train(tiny_train_config(run, variant=variant, steps=2, sample_count=0))
        out[variant] = (ebsdray.load_model(run / "best.pt"), run / "best.pt")
    return out
