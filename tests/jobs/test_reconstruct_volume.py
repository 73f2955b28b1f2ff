"""The volume reconstruction job: real Hydra composition, a real sqlite MLflow store, zarr outputs,
Parquet tables; the script itself in a subprocess and under `ray job submit` (slow)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ebsdray import volume_job
from ebsdray.distributed.cluster import LOOPBACK_HOSTS
from ebsdray.volume_job import run

ROOT = Path(__file__).resolve().parents[2]


def tiny_overrides(checkpoint, home, out):
    return [
        f"paths.root={home}",
        f"model={checkpoint}",
        "synthetic.shape=[3,16,24]",
        "synthetic.grain_size=6",
        "observation.ebsd_fraction=0.25",
        "budget.samples=2",
        "sampler.steps=3",
        "sampler.particles=2",
        "progress=false",
        f"output_dir={out}",
    ]


def composed(overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("reconstruct_volume", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def job(ray_cluster, tiny_models, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = home / "rec"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    config = composed(tiny_overrides(tiny_models["multimodal"][1], home, out))
    summary = run(config)
    return {"home": home, "out": out, "config": config, "summary": summary}


def test_outputs_store_tables_and_figures(job):
    out = job["out"]
    root = zarr.open_group(out / "reconstruction.zarr", mode="r")
    assert root["boundary"].shape == (3, 16, 24) and root["boundary"].dtype == bool
    assert root["ebsd_quaternions"].shape == (3, 16, 24, 4)
    assert root["pl_denoised"].shape[0] == 3
    assert set(root["uncertainty"].array_keys()) == {
        "boundary_variance",
        "pl_std",
        "ebsd_spread_deg",
    }
    assert root["completed"][:].all() and (root["sample_count"][:] == 2).all()
    assert "samples" not in root  # raw samples only on request
    assert root.attrs["config"]["budget"]["samples"] == 2
    assert root.attrs["identity"]["model"] == job["config"]["model"]
    assert root.attrs["ebsdray_version"]
    assert np.isfinite(root.attrs["overall"]["chamfer"])
    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [r["section"] for r in table] == [0, 1, 2]
    assert {"chamfer", "sobel_chamfer", "disorientation_mean_deg", "bilinear_disorientation_mean_deg",
            "network_evaluations", "samples"} <= set(table[0])  # fmt: skip
    for name in ("summary.png", "config.yaml", "summary.json", "sections/section_00002.png"):
        assert (out / name).is_file(), name


def test_mlflow_run_has_params_per_section_metrics_and_figures(job):
    mlflow.set_tracking_uri(f"sqlite:///{job['home'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ebsdray-reconstruct"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["params.K"] == "2" and row["params.ebsd_fraction"] == "0.25"
    # every config value that changes results, read back from the sqlite store
    expected = {
        "observation.ebsd_noise": "0.0", "observation.pl_noise": "0.05",
        "observation.corruptions": "none", "pl_corruption": "none", "crop": "None",
        "sections": "all", "precision": "auto", "sampler.steps": "3", "sampler.particles": "2",
        "sampler.ebsd_guidance": "10.0", "sampler.warm_start_t": "400", "seed": "0",
        "sampler": "guided", "sampler.name": "guided", "budget.samples": "2",
        "budget.max_samples": "None", "budget.tolerance": "0.05",
        "volume.synthetic.shape": "[3, 16, 24]", "volume.synthetic.grain_size": "6", "section_count": "3",
    }  # fmt: skip
    for key, value in expected.items():
        assert row[f"params.{key}"] == value, key
    for key in ("pattern", "model", "variant"):
        assert f"params.{key}" in runs.columns
    client = mlflow.MlflowClient()
    history = client.get_metric_history(row["run_id"], "section/chamfer")
    assert sorted(m.step for m in history) == [0, 1, 2]
    # the plain name is the overall mean, logged once (not the last section's value)
    overall = client.get_metric_history(row["run_id"], "chamfer")
    assert len(overall) == 1
    assert overall[0].value == pytest.approx(np.mean([m.value for m in history]))
    assert row["metrics.chamfer"] == pytest.approx(job["summary"]["overall"]["chamfer"])
    names = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"summary.png", "config.yaml", "metrics.parquet", "sections"} <= names


def test_metrics_tables_of_several_runs_concatenate(job):
    table = pq.read_table(job["out"] / "metrics.parquet")
    rows = table.to_pylist()
    assert {r["run_id"] for r in rows} == {job["summary"]["mlflow_run_id"]}
    assert {(r["K"], r["ebsd_fraction"], r["pattern"], r["seed"]) for r in rows} == {
        (2, 0.25, "grid", 0)
    }
    assert rows[0]["model"] == job["config"]["model"] and rows[0]["variant"] == "multimodal"
    both = pa.concat_tables([table, table])  # same schema: tables of runs stack
    assert both.num_rows == 2 * len(rows)


def test_rerun_resumes_the_same_run_and_keeps_outputs(job):
    before = (job["out"] / "sections" / "section_00001.json").stat().st_mtime_ns
    summary = run(job["config"])
    assert summary["mlflow_run_id"] == job["summary"]["mlflow_run_id"]
    assert (job["out"] / "sections" / "section_00001.json").stat().st_mtime_ns == before
    assert summary["overall"] == job["summary"]["overall"]


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("budget.samples=0", ValueError, "Budget.samples"),
        ("sampler.steps=0", ValueError, "SamplerSpec.steps"),
        ("sampler.name=dps", ValueError, r"unknown sampler 'dps' \(SamplerSpec\.name\)"),
        ("observation.ebsd_fraction=2", ValueError, r"\[0, 1\]"),
        ("observation.ebsd_fraction=0.3", ValueError, "1/s"),
        ("observation.pattern=spiral", ValueError, "spiral"),
        ("replica.num_cpus=0", ValueError, "positive"),
        ("grain_tolerance_deg=0", ValueError, "grain_tolerance_deg must be an angle"),
        ("volume=/no/such/store.zarr", FileNotFoundError, "no ebsdray volume store"),
    ],
)
def test_bad_config_fails_fast_and_writes_nothing(job, tmp_path, override, error, message):
    config = composed(
        [*tiny_overrides(job["config"]["model"], job["home"], tmp_path / "o"), override]
    )
    with pytest.raises(error, match=message):
        run(config)
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_and_unknown_keys_are_named(job, tmp_path):
    config = composed(tiny_overrides("/no/such/model.pt", job["home"], tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match=r"model\.pt"):
        run(config)
    with pytest.raises(Exception, match=r"budget\.sample"):
        composed([*tiny_overrides("multimodal", job["home"], tmp_path / "o"), "budget.sample=3"])
    with pytest.raises(Exception, match=r"budget\.steps"):  # a sampler key, in its own block
        composed([*tiny_overrides("multimodal", job["home"], tmp_path / "o"), "budget.steps=3"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "override",
    [
        "+budget.sampels=4",
        "+budget.sampler=fps_smc",  # set by the job from the sampler block
        "+sampler.step=4",
        "+sampler.sampler=fps_smc",
        "+observation.nois=0.1",
        "+replica.gpus=1",
        "+synthetic.seeds=1",
    ],
)
def test_added_keys_with_typos_are_named(job, tmp_path, override):
    config = composed(
        [*tiny_overrides(job["config"]["model"], job["home"], tmp_path / "o"), override]
    )
    name = override[1:].split("=")[0].replace(".", r"\.")
    with pytest.raises(ValueError, match=rf"unknown config keys {name}.*spelling"):
        run(config)
    assert not (tmp_path / "o").exists()


def test_the_config_seed_and_grain_tolerance_reach_reconstruct(monkeypatch):
    """``seed`` seeds the posterior samples too, as the store's identity and the params say
    (the job sampled with reconstruct's default seed 0 whatever the config said), and
    ``grain_tolerance_deg`` is the merge's."""
    seen = {}
    monkeypatch.setattr(volume_job, "reconstruct", lambda *a, **kw: seen.update(kw))
    config = {"seed": 5, "sections": None, "keep_samples": False, "precision": "fp32",
              "grain_tolerance_deg": 2.0, "progress": False, "figures": False,
              "evaluate": False}  # fmt: skip
    volume_job._reconstruct(config, None, None, None, None, None, None)
    assert seen["seed"] == 5 and seen["grain_tolerance_deg"] == 2.0


@pytest.mark.parametrize("suffix", [".h5", ".ang"])
def test_an_ebsd_map_file_is_accepted_as_the_volume(job, tmp_path, suffix):
    from ebsdray.io import example_ebsd_map_path, read_ebsd_map
    from ebsdray.io.ebsd_writers import write_ang

    path = example_ebsd_map_path()
    if suffix == ".ang":
        path = write_ang(read_ebsd_map(path), tmp_path / "map.ang")
    overrides = tiny_overrides(job["config"]["model"], job["home"], tmp_path / "map")
    overrides = [o for o in overrides if not o.startswith("synthetic")]
    config = composed([*overrides, f"volume={path}", "crop=[16,16]"])
    summary = run(config)
    assert summary["sections"] == 1
    root = zarr.open_group(tmp_path / "map" / "reconstruction.zarr", mode="r")
    assert root["boundary"].shape == (1, 16, 16)
    assert root.attrs["identity"]["volume"]["map"] == str(path)


def test_ctrl_c_keeps_finished_sections_marks_the_run_killed_and_says_how_to_resume(
    tiny_models, tmp_path
):
    home, out = tmp_path / "home", tmp_path / "out"
    args = tiny_overrides(tiny_models["multimodal"][1], home, out)
    args = [a for a in args if not a.startswith(("sampler.steps", "synthetic.shape"))]
    # enough work that the job is still running when the first section is saved; no Ray
    args += ["synthetic.shape=[6,16,24]", "sampler.steps=12", "cluster=null"]
    env = {**os.environ, "EBSDRAY_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    job = subprocess.Popen(
        [sys.executable, "jobs/reconstruct_volume.py", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while not list((out / "sections").glob("*.json")) and time.time() < deadline:
        assert job.poll() is None, job.communicate()[1][-3000:]
        time.sleep(0.2)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert (
        "run the same command again (same output_dir) to resume" in stderr.strip().splitlines()[-1]
    )
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"
    kept = sorted(out.glob("sections/*.json"))
    assert 1 <= len(kept) < 6


def test_output_dir_of_another_job_fails_before_compute(job):
    config = dict(job["config"], seed=5)
    with pytest.raises(FileExistsError, match="seed: 0 there, 5 now"):
        run(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_script_and_ray_job_submit_to_a_local_head(tiny_models, tmp_path, listening_addresses):
    """`python jobs/reconstruct_volume.py` (its own cluster, on loopback only) and `ray job submit`
    to a `ray start --head` cluster."""
    home = tmp_path / "home"
    env = {**os.environ, "EBSDRAY_HOME": str(home), "RAY_worker_niceness": "0"}
    # Ray 2.60 turns token auth on for local heads; the job CLI sends the token only in token mode.
    env["RAY_AUTH_MODE"] = "token"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    ckpt = tiny_models["multimodal"][1]
    args = [a for a in tiny_overrides(ckpt, home, "x") if not a.startswith(("output_dir", "paths"))]
    script = subprocess.Popen(
        [sys.executable, "jobs/reconstruct_volume.py", *args, "replicas=1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sockets = {}
    while script.poll() is None:  # the job's own cluster, watched while it runs
        sockets.update(listening_addresses(script.pid))
        time.sleep(0.5)
    stdout, stderr = script.communicate()
    assert script.returncode == 0, stderr[-3000:]
    assert "reconstructed 3 sections" in stdout and "mlflow ui --backend-store-uri" in stdout
    assert {"gcs_server", "raylet"} <= {n for owners in sockets.values() for n in owners}
    exposed = {a: o for a, o in sockets.items() if a.rsplit(":", 1)[0] not in LOOPBACK_HOSTS}
    assert not exposed, f"the job's cluster listens beyond loopback: {exposed}"
    assert len(list((home / "reconstructions").glob("*/reconstruction.zarr"))) == 1

    port, dash = _free_port(), _free_port()
    bin_dir = Path(sys.executable).parent
    temp = Path("/tmp") / f"ebsdray-ray-{os.getpid()}"  # short: unix socket paths are limited
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", f"--dashboard-port={dash}", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        address = f"http://127.0.0.1:{dash}"
        submit = None
        for _ in range(60):  # the dashboard takes a while to come up
            time.sleep(2)
            submit = subprocess.run(
                [str(bin_dir / "ray"), "job", "submit", f"--address={address}",
                 "--working-dir", str(ROOT), "--",
                 sys.executable, "jobs/reconstruct_volume.py", *args,
                 f"output_dir={home / 'submitted'}"],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            # the dashboard, then its job agent, take a while to come up on a busy machine
            not_yet = ("Connection refused", "No available agent to submit job")
            if not any(m in submit.stderr + submit.stdout for m in not_yet):
                break
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
        assert "reconstructed 3 sections" in submit.stdout
        assert json.loads((home / "submitted" / "summary.json").read_text())["sections"] == 3
    finally:
        head.terminate()
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_jobs_nest_under_one_parent_run(job, tmp_path):
    sweep = {"dir": str(tmp_path / "sweep"), "name": "sweep test"}
    ids = []
    for k in (1, 2):
        overrides = tiny_overrides(job["config"]["model"], job["home"], tmp_path / f"k{k}")
        config = composed([*overrides, f"budget.samples={k}", "sections=[0]"])
        config["mlflow"]["experiment"] = "ebsdray-sweep-test"
        ids.append(run(config, sweep=sweep)["mlflow_run_id"])
    client = mlflow.MlflowClient(f"sqlite:///{job['home'] / 'mlflow.db'}")
    parents = {client.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["ebsdray.sweep"] == sweep["dir"]
    assert [client.get_run(i).data.params["K"] for i in ids] == ["1", "2"]
