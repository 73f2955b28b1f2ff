"""The sweep end to end with tiny models on a tiny volume: real Hydra composition, a real sqlite
MLflow store read back, done-records, restart that skips finished configurations, the report."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ebsdray.experiments import run_sweep
from ebsdray.experiments.claims import CLAIMS
from ebsdray.experiments.tracking import run_key

ROOT = Path(__file__).resolve().parents[2]
TINY_PLAN = {
    "name": "tiny",
    "samples": [1, 2],
    "seeds": [0],
    "blocks": {
        "fraction": {
            "volumes": ["tiny"],
            "models": ["multimodal", "pl", "ebsd"],
            "fractions": [0, 0.25],
            "pl": ["none"],
        },
        "misregistration": {
            "volumes": ["tiny"],
            "models": ["multimodal"],
            "fractions": [0.25],
            "pl": ["misregistration"],
        },
    },
}
# 5 sample sets (multimodal 0, 1/4, 1/4 misregistered; PL model 0; EBSD model 1/4) and the
# baselines of 3 observations; runs: 5 x 2 K + Sobel (no EBSD) + 2 x 3 baselines (with EBSD)
RECORDS, RUNS = 8, 17


def tiny_config(home: Path, tiny_models) -> dict:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "sweep",
            overrides=[
                f"paths.root={home}",
                "size=smoke",
                "sampler.steps=3",
                "threads=1",
                "progress=false",
                *[f"models.{v}={ckpt}" for v, (_, ckpt) in tiny_models.items()],
            ],
        )
    config = OmegaConf.to_container(cfg, resolve=True)
    config["plan"] = TINY_PLAN
    config["volumes"]["tiny"] = {
        "synthetic": {"shape": [1, 16, 16], "seed": 3, "grain_size": 6},
        "volume": None,
        "group": "synthetic",
    }
    config["output_dir"] = str(home / "sweeps" / "tiny")
    return config


@pytest.fixture(scope="module")
def sweep(tiny_models, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    config = tiny_config(home, tiny_models)
    summary = run_sweep(config)
    return {"home": home, "config": config, "summary": summary}


def store(sweep):
    mlflow.set_tracking_uri(f"sqlite:///{sweep['home'] / 'mlflow.db'}")
    return mlflow.MlflowClient()


def children(client, parent):
    exp = client.get_experiment_by_name("ebsdray-sweep").experiment_id
    return client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_first_run_computes_every_configuration(sweep):
    s = sweep["summary"]
    assert len(s["computed"]) == RECORDS and s["skipped"] == []
    out = Path(s["output_dir"])
    assert len(list((out / "records").glob("*.json"))) == RECORDS
    rows = pq.read_table(out / "results.parquet").to_pandas()
    # one row per section and K of each sample set, one per baseline of each observation
    assert len(rows) == 5 * 2 + 1 + 2 * 3
    assert set(rows.loc[rows.model == "pl", "fraction"]) == {0.0}
    assert set(rows.loc[rows.model == "ebsd", "pl"]) == {"none"}


def test_nested_runs_with_the_compare_params(sweep):
    client = store(sweep)
    parent = client.get_run(sweep["summary"]["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ebsdray.sweep"] == sweep["summary"]["output_dir"]
    runs = children(client, parent.info.run_id)
    assert len(runs) == RUNS and {r.info.status for r in runs} == {"FINISHED"}
    (mis,) = [
        r
        for r in runs
        if r.data.params["pl_corruption"] == "misregistration"
        and r.data.params["K"] == "2"
        and r.data.params["model"] == "multimodal"
    ]
    p = mis.data.params
    assert (p["ebsd_fraction"], p["pattern"], p["seed"], p["volume"]) == (
        "0.25",
        "grid",
        "0",
        "tiny",
    )
    assert p["sampler"] == "guided" and p["steps"] == "3" and p["variant"] == "multimodal"
    table = pd.read_parquet(sweep["summary"]["results"])
    row = table[(table.model == "multimodal") & (table.pl == "misregistration") & (table.K == 2)]
    assert mis.data.metrics["chamfer"] == pytest.approx(row["chamfer"].mean())
    assert "pl_route_chamfer" in mis.data.metrics and "section/chamfer" in mis.data.metrics
    baselines = {r.data.params["model"] for r in runs if r.data.params["K"] == "0"}
    assert baselines == {"sobel", "nearest", "bilinear"}
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.md", "results.parquet", "results"} <= artifacts


def test_restart_skips_finished_configurations(sweep):
    out = Path(sweep["summary"]["output_dir"])
    records = sorted((out / "records").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    again = run_sweep(sweep["config"])
    assert again["computed"] == [] and len(again["skipped"]) == RECORDS
    assert {p: p.stat().st_mtime_ns for p in records} == stamps
    client = store(sweep)
    assert again["mlflow_parent_run_id"] == sweep["summary"]["mlflow_parent_run_id"]
    assert len(children(client, again["mlflow_parent_run_id"])) == RUNS  # nothing logged twice


def test_restart_after_an_interruption(sweep):
    """A configuration whose record was never written is computed again (only it); a run left
    RUNNING is replaced, a FINISHED one is kept."""
    out = Path(sweep["summary"]["output_dir"])
    client = store(sweep)
    parent = sweep["summary"]["mlflow_parent_run_id"]
    runs = children(client, parent)
    pl_run = next(r for r in runs if r.data.params["model"] == "pl" and r.data.params["K"] == "1")
    (out / "records" / f"{pl_run.data.tags['ebsdray.config_key']}.json").unlink()
    stuck = next(r for r in runs if r.data.params["model"] == "ebsd" and r.data.params["K"] == "2")
    client.update_run(stuck.info.run_id, status="RUNNING")  # as a killed sweep leaves it
    again = run_sweep(sweep["config"])
    assert len(again["computed"]) == 1 and again["computed"][0].startswith("pl ")
    after = children(client, parent)
    assert len(after) == RUNS and {r.info.status for r in after} == {"FINISHED"}
    assert client.get_run(stuck.info.run_id).info.lifecycle_stage == "deleted"
    assert pl_run.info.run_id in {r.info.run_id for r in after}  # its FINISHED runs are kept
    keys = [r.data.tags["ebsdray.run_key"] for r in after]
    assert len(set(keys)) == RUNS
    assert run_key(stuck.data.tags["ebsdray.config_key"], "ebsd", 2) in keys


def test_report_has_every_section_and_verdict(sweep):
    report = Path(sweep["summary"]["report"])
    text = report.read_text()
    for heading in (
        "## Verdicts",
        "## Boundaries against EBSD fraction",
        "## Reduction against Sobel",
        "## Inference scaling",
        "## EBSD super-resolution",
        "## Robustness",
        "## Uncertainty against error",
        "## Reproduce",
    ):
        assert heading in text, heading
    verdicts = text.split("## Verdicts")[1].split("\n## ")[0]
    rows = [line for line in verdicts.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == len(CLAIMS)  # one test set (synthetic), one row per claim
    allowed = ("holds", "does not hold", "not significant", "partly", "no data")
    assert all(re.search(r"\*\*(.+?)\*\*", r).group(1).startswith(allowed) for r in rows)
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (report.parent / image).is_file(), image
    assert "fig7_boundaries_synthetic.png" in text and "reliability_synthetic.png" in text


@pytest.mark.slow
@pytest.mark.timeout(3000)  # ~21 min on an AVX2-only EPYC (2 cores, shipped wider model)
def test_smoke_sweep_script(tmp_path):
    """The documented smoke command, shipped models, in a subprocess (minutes)."""
    env = {**os.environ, "EBSDRAY_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "jobs/sweep.py", "size=smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = tmp_path / "sweeps" / "smoke" / "results.md"
    assert "## Verdicts" in report.read_text()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ebsdray-sweep"])
    assert {"multimodal", "pl", "ebsd", "sobel"} <= set(runs["params.model"].dropna())
