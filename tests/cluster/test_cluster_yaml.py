"""cluster.yaml validated offline with Ray's own schema, plus the project's invariants."""

from pathlib import Path

import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_passes_rays_schema():
    validate_config(prepare_config(load()))


def test_image_matches_pinned_ray_and_gpu_workers_scale_from_zero():
    cfg = load()
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert "ray-ml" not in cfg["docker"]["image"]
    head = cfg["head_node_type"]
    assert "GPU" not in cfg["available_node_types"][head]["resources"]
    gpu_types = [t for t, n in cfg["available_node_types"].items() if n["resources"].get("GPU")]
    assert gpu_types
    assert all(cfg["available_node_types"][t]["min_workers"] == 0 for t in gpu_types)


def test_project_is_installed_and_mlflow_runs_on_the_head():
    cfg = load()
    assert any("pip install" in c and "ebsdray" in c for c in cfg["setup_commands"])
    assert any("mlflow server" in c for c in cfg["head_start_ray_commands"])


def test_a_typo_is_caught(tmp_path):
    import pytest

    cfg = load()
    cfg["available_node_types"]["worker.gpu.1x"]["min_worker"] = 0
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(cfg))
