"""Shared fixtures: one real local Ray cluster for the whole session, tiny generated datasets."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs, started once and shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dataset directory with two small training volumes and one validation volume."""
    from ebsdray.data.generate import generate_dataset

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
