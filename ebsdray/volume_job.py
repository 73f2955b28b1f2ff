"""The volume reconstruction job: config in, zarr outputs + figures + tables + an MLflow run out.

``jobs/reconstruct_volume.py`` composes the Hydra config and calls :func:`run`; everything else
lives here so that it is importable and testable. The job is a thin layer over the API
(:func:`ebsdray.observe`, :func:`ebsdray.reconstruct`): it adds input loading, fail-fast checks,
MLflow tracking (one run per job, nested under a sweep's parent), a Parquet table of per-section
metrics and a summary figure.

Outputs in ``output_dir``: ``reconstruction.zarr`` and ``sections/`` (see
:mod:`ebsdray.io.reconstruction_store`), ``metrics.parquet`` (one row per section),
``summary.json``, ``summary.png``, ``config.yaml`` and ``mlflow_run.json`` (so a resumed job
continues the same MLflow run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ebsdray.api import Budget, ReplicaResources, prepare_output, reconstruct
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.volume import Volume
from ebsdray.diffusion.pretrained import load_model
from ebsdray.figures import summary_figure
from ebsdray.io import example_ebsd_map_path, open_volume, read_ebsd_map
from ebsdray.io.volume_store import VolumeStore
from ebsdray.observation import observe
from ebsdray.tracking import ensure_experiment, flatten, resolve_tracking_uri, start_run

KEYS = {
    "volume", "synthetic", "crop", "sections", "observation", "budget", "model", "replicas",
    "replica", "cluster", "samples_per_request", "seed", "keep_samples", "precision", "output_dir",
    "evaluate", "figures", "mlflow", "progress",
}  # fmt: skip


def load_input(volume: str | None, synthetic: dict[str, Any], crop: list[int] | None):
    """The volume to reconstruct and a description of where it came from.

    Parameters
    ----------
    volume : a zarr volume store path, ``"example"`` (the shipped real Ti EBSD map, one
        section), or None (a synthetic test volume from ``synthetic``:
        :func:`ebsdray.synthetic_volume` keywords with ``shape`` and ``seed``).
    crop : optional ``[H, W]``: the top-left window of every section (e.g. to make the real
        101 x 101 map divisible by a grid factor).
    """
    if volume is None:
        vol: Volume | VolumeStore = synthetic_volume(**synthetic)
        source = {"synthetic": synthetic}
    elif str(volume) == "example":
        vol = read_ebsd_map(example_ebsd_map_path())
        source = {"example": example_ebsd_map_path().name}
    else:
        path = Path(str(volume)).expanduser().resolve()
        vol = open_volume(path)  # raises a clear error for a missing or foreign store
        source = {"store": str(path)}
    if crop is not None:
        if len(crop) != 2:
            raise ValueError(f"crop must be [H, W]; got {crop}")
        vol = (vol if isinstance(vol, Volume) else vol.read()).crop(int(crop[0]), int(crop[1]))
        source["crop"] = [int(c) for c in crop]
    return vol, source


def _check_keys(config: dict[str, Any]) -> None:
    unknown = set(config) - KEYS - {"paths"}
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(KEYS)}")


def _sweep_parent(tracking_uri: str, experiment: str, sweep: dict[str, str]) -> str:
    """The parent run of a Hydra sweep (created by its first job, found by the later ones)."""
    exp_id = ensure_experiment(tracking_uri, experiment)
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`ebsdray.sweep` = '{sweep['dir']}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=sweep["name"], tags={"ebsdray.sweep": sweep["dir"]})
    return run.info.run_id


def _row(record: dict[str, Any]) -> dict[str, Any]:
    row = {"section": record["section"]}
    row |= {k: v for k, v in record["info"].items() if np.isscalar(v)}
    row |= record["metrics"]
    return row


def summarize(records: list[dict[str, Any]]) -> dict[str, float]:
    """Overall figures of a job: mean of each metric over sections, total cost."""
    keys = sorted({k for r in records for k in r["metrics"]})
    out = {k: float(np.nanmean([r["metrics"].get(k, np.nan) for r in records])) for k in keys}
    out["samples_total"] = float(sum(r["info"].get("samples", 0) for r in records))
    out["network_evaluations_total"] = float(
        sum(r["info"].get("network_evaluations", 0) for r in records)
    )
    out["sampling_seconds_total"] = float(
        sum(r["info"].get("sampling_seconds", 0.0) for r in records)
    )
    return out


def run(config: dict[str, Any], sweep: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one reconstruction job from a resolved config (``configs/reconstruct_volume.yaml``).

    Every check that can fail (config values, the model, the volume, the output dir) runs before
    any sampling. Returns the summary (also written to ``output_dir/summary.json``).
    """
    t0 = time.perf_counter()
    _check_keys(config)
    budget = Budget(**config["budget"])
    resources = ReplicaResources(**config["replica"])
    if config["replicas"] is not None and int(config["replicas"]) < 1:
        raise ValueError(
            f"replicas must be >= 1 or null (as many as fit); got {config['replicas']}"
        )
    if not config.get("output_dir"):
        raise ValueError("output_dir must be set (the job script defaults it under paths)")
    volume, source = load_input(config["volume"], config["synthetic"], config["crop"])
    model = load_model(config["model"])
    seed = int(config["seed"])
    observation = observe(volume, **config["observation"], seed=seed)
    out = Path(config["output_dir"]).expanduser().resolve()
    # every check before the MLflow run opens and before any sampling; resumes a same-job store
    store = prepare_output(
        out,
        observation,
        model,
        budget,
        seed=seed,
        sections=config["sections"],
        precision=config["precision"],
        keep_samples=config["keep_samples"],
        identity={"volume": source},
        store_attrs={"config": config},
    )

    ml = config["mlflow"]
    run_file = out / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    parent = _sweep_parent(ml["tracking_uri"], ml["experiment"], sweep) if sweep else None
    name = f"{model.variant}-K{budget.samples}-f{observation.spec.ebsd_fraction:g}"
    with start_run(ml["tracking_uri"], ml["experiment"], name, run_id, parent) as active:
        run_file.write_text(json.dumps({"run_id": active.info.run_id}))
        if run_id is None:
            mlflow.log_params(
                {
                    "K": budget.samples,
                    "ebsd_fraction": observation.spec.ebsd_fraction,
                    "pattern": observation.spec.pattern,
                    "pl_noise": observation.spec.pl_noise,
                    "sampler": budget.sampler,
                    "steps": budget.steps,
                    "particles": budget.particles,
                    "max_samples": budget.max_samples,
                    "model": model.source,
                    "variant": model.variant,
                    "seed": seed,
                    "precision": config["precision"],
                    "replicas": config["replicas"],
                    "sections": len(observation),
                    "output_dir": str(out),
                    **flatten({"volume": source}),
                }
            )
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        logged_figures = 0

        def on_section(record: dict[str, Any]) -> None:
            nonlocal logged_figures
            numbers = {
                k: v for k, v in _row(record).items() if k != "section" and not isinstance(v, str)
            }
            mlflow.log_metrics({k: float(v) for k, v in numbers.items()}, step=record["section"])
            png = out / "sections" / f"section_{record['section']:05d}.png"
            if png.exists() and logged_figures < int(ml["section_figures"]):
                mlflow.log_artifact(str(png), artifact_path="sections")
                logged_figures += 1

        result = reconstruct(
            observation,
            model,
            budget,
            sections=config["sections"],
            keep_samples=config["keep_samples"],
            precision=config["precision"],
            progress=config["progress"],
            cluster=config["cluster"],
            replicas=config["replicas"],
            resources=resources,
            samples_per_request=config["samples_per_request"],
            output_dir=store,
            figures=config["figures"],
            evaluate=config["evaluate"],
            on_section=on_section,
        )
        records = result.records
        used = sorted({r["info"].get("precision", "") for r in records} - {""})
        mlflow.set_tag("precision_used", "+".join(used))
        pq.write_table(pa.Table.from_pylist([_row(r) for r in records]), out / "metrics.parquet")
        overall = summarize(records) if config["evaluate"] else {}
        summary_figure(records, out / "summary.png", title=f"{name}  ({out.name})")
        mlflow.log_metrics({f"overall_{k}": v for k, v in overall.items()})
        for path in ("summary.png", "config.yaml", "metrics.parquet"):
            mlflow.log_artifact(str(out / path))
        summary = {
            "output_dir": str(out),
            "store": str(out / "reconstruction.zarr"),
            "sections": len(records),
            "precision": config["precision"],
            "precision_used": "+".join(used),
            "wall_seconds": time.perf_counter() - t0,
            "mlflow_run_id": active.info.run_id,
            "mlflow_tracking_uri": resolve_tracking_uri(ml["tracking_uri"]),
            "overall": overall,
        }
        mlflow.log_metric("wall_seconds", summary["wall_seconds"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    store.finalize({"overall": overall, "mlflow_run_id": active.info.run_id})
    store.release()
    return summary
