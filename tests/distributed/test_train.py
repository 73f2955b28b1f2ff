"""Ray Train: the same loop in a real worker group on the shared local cluster."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ebsdray.distributed.train import check_resources, fit
from ebsdray.io.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_refuses_more_workers_than_the_cluster_has(ray_cluster):
    with pytest.raises(ValueError, match="cluster has 2"):
        check_resources(num_workers=3, use_gpu=False, cpus_per_worker=1)
    with pytest.raises(ValueError, match="GPUs"):
        check_resources(num_workers=1, use_gpu=True, cpus_per_worker=1)
    check_resources(num_workers=2, use_gpu=False, cpus_per_worker=1)


def test_two_gloo_workers_train_and_rank0_checkpoints(ray_cluster, tiny_train_config, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", name="ddp", variant="pl", sample_steps=2, threads=1)
    metrics = fit(cfg, num_workers=2, cpus_per_worker=1, storage_path=str(tmp_path / "ray"))
    assert metrics["step"] == 4
    assert load_checkpoint(tmp_path / "run" / "best.pt")["variant"] == "pl"


@pytest.mark.slow
def test_train_job_end_to_end(tiny_dataset, tmp_path):
    """`python jobs/train.py` with real Hydra composition, Ray Train and a sqlite MLflow store."""
    home = tmp_path / "home"
    env = {**os.environ, "EBSDRAY_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "trainer=ci", f"data_dir={tiny_dataset}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = home / "checkpoints" / "multimodal-ci"
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 12
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ebsdray-train"])
    assert len(runs) == 1
    assert runs.loc[0, "params.variant"] == "multimodal"
    assert "metrics.val_loss" in runs.columns and "metrics.train_loss" in runs.columns
    client = mlflow.MlflowClient()
    artifacts = [a.path for a in client.list_artifacts(runs.loc[0, "run_id"], "samples")]
    assert any(p.endswith(".png") for p in artifacts)
    # artifacts beside the database, not under the job's cwd
    assert (home / "mlartifacts" / "ebsdray-train").is_dir()
    assert not (tmp_path / "mlruns").exists()
