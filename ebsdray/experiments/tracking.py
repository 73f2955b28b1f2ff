"""MLflow view of a sweep: one parent run per sweep, one child run per (configuration, K), and one
per baseline of each observation, all with the same short params as the main job (``K``,
``ebsd_fraction``, ``pattern``, ``model``, ``pl_corruption``) plus ``seed`` and ``volume``, so the
compare view and a parallel-coordinates plot line them up.

Child runs are keyed by the tag ``ebsdray.run_key`` (configuration fingerprint, model, K): a key
with a FINISHED run under the parent is never logged twice; a run of that key left in another
state (an interrupted sweep) is deleted and logged again.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Param

from ebsdray.experiments.plan import BASELINES
from ebsdray.tracking import ensure_experiment, flatten, resolve_tracking_uri, sweep_parent

IDENTITY = ("volume", "group", "section", "seed", "model", "fraction", "pattern", "pl", "K")
FINISHED = "FINISHED"


def run_key(fingerprint: str, model: str, k: int) -> str:
    return f"{fingerprint}:{model}:K{k}"


def child_runs(record: dict[str, Any]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """``(model, K, rows)`` of every MLflow run of a record: one per K for a model, one per
    baseline (K = 0) for a baselines record; rows are the sections' rows of that run."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in record["rows"]:
        groups[(row["model"], int(row["K"]))].append(row)
    return [(m, k, rows) for (m, k), rows in sorted(groups.items())]


def _metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means over sections of every finite numeric metric (the run page's plain names)."""
    names = {k for r in rows for k, v in r.items() if k not in IDENTITY and _number(v)}
    out = {}
    for name in sorted(names):
        values = [float(r[name]) for r in rows if _number(r.get(name))]
        values = [v for v in values if math.isfinite(v)]
        if values:
            out[name] = float(np.mean(values))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class SweepTracker:
    """Parent run and child runs of one sweep in one MLflow store (driver only)."""

    def __init__(self, tracking_uri: str, experiment: str, sweep: str, config: dict) -> None:
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment_id = ensure_experiment(self.uri, experiment)
        self.client = mlflow.MlflowClient(self.uri)
        plan = config["plan"]
        self.config = config
        self.parent = sweep_parent(self.uri, experiment, sweep, f"sweep {plan['name']}")
        if not self.client.get_run(self.parent).data.params:  # params are set once
            self._batch(self.parent, params=flatten(self._parent_params()))
        self.client.update_run(self.parent, status="RUNNING")
        self.existing = self._children()

    def _parent_params(self) -> dict[str, Any]:
        c = self.config
        return {
            "size": c["plan"]["name"],
            "K": "/".join(str(k) for k in sorted(c["plan"]["samples"])),
            "sampler": dict(c["sampler"]),
            "precision": c["precision"],
            "volumes": ",".join(sorted(c["volumes"])),
            "models": dict(c["models"]),
        }

    def _children(self) -> dict[str, list[tuple[str, str]]]:
        """``{run_key: [(run_id, status), ...]}`` of the parent's live child runs."""
        found: dict[str, list[tuple[str, str]]] = defaultdict(list)
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self.parent}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                key = run.data.tags.get("ebsdray.run_key")
                if key:
                    found[key].append((run.info.run_id, run.info.status))
            token = page.token
            if not token:
                return found

    def log(self, record: dict[str, Any]) -> int:
        """Log the record's runs that the store lacks; returns how many were logged."""
        logged = 0
        for model, k, rows in child_runs(record):
            key = run_key(record["fingerprint"], model, k)
            runs = self.existing.get(key, [])
            if any(status == FINISHED for _, status in runs):
                continue
            for run_id, _ in runs:  # left RUNNING/FAILED/KILLED by an interrupted sweep
                self.client.delete_run(run_id)
            self.existing[key] = [(self._child(record, model, k, rows, key), FINISHED)]
            logged += 1
        return logged

    def _child(self, record, model: str, k: int, rows, key: str) -> str:
        ident = record["identity"]
        name = (
            f"{model} K{k} f{ident['fraction']:g} {ident['pattern']} {ident['pl']} "
            f"{ident['volume']} s{ident['seed']}"
        )
        tags = {
            "mlflow.parentRunId": self.parent,
            "ebsdray.run_key": key,
            "ebsdray.config_key": record["fingerprint"],  # a tag: an identifier, not a setting
        }
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        metrics = _metrics(rows)
        info = record.get("info", {})
        if info.get("samples"):  # the cost of the whole sample set (the largest K)
            metrics["seconds_per_sample"] = info["sampling_seconds"] / info["samples"]
        steps = []
        for row in rows:  # per-section values under section/<name>, step = section index
            for name_, value in _metrics([row]).items():
                steps.append((f"section/{name_}", value, int(row["section"])))
        self._batch(run_id, self._params(record, model, k, rows), metrics, steps)
        self.client.set_terminated(run_id, FINISHED)
        return run_id

    def _params(self, record, model: str, k: int, rows) -> dict[str, str]:
        ident, facts = record["identity"], record["facts"]
        setting = facts["pl_setting"]
        sampler = facts.get("sampler", {})
        params = {
            "K": k,
            "ebsd_fraction": ident["fraction"],
            "pattern": ident["pattern"],
            "model": model,
            "pl_corruption": ident["pl"],
            "seed": ident["seed"],
            "volume": ident["volume"],
            "group": ident["group"],
            "pl_noise": setting.get("pl_noise", 0.05),
            "corruptions": setting.get("corruptions") or "none",
            "sampler": sampler.get("name", "none") if model != BASELINES else "none",
            "steps": sampler.get("steps", 0),
            "variant": record.get("info", {}).get("variant", "baseline"),
            "model_source": facts.get("model_source", "baseline"),
            "section_count": len(rows),
            "size": self.config["plan"]["name"],
        }
        return {k_: str(v) for k_, v in params.items()}

    def _batch(self, run_id, params=None, metrics=None, steps=()) -> None:
        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        ms += [Metric(k, v, now, s) for k, v, s in steps]
        ps = [Param(k, v) for k, v in (params or {}).items()]
        for i in range(0, max(len(ms), len(ps), 1), 100):  # MLflow's per-batch limits
            self.client.log_batch(run_id, metrics=ms[i : i + 100], params=ps[i : i + 100])

    def finish(self, report: Path, results: Path, wall_seconds: float) -> None:
        """Attach the report, its figures and the results table to the parent; mark it done."""
        self._batch(self.parent, metrics={"wall_seconds": wall_seconds})
        self.client.log_artifact(self.parent, str(results))
        if report.exists():
            self.client.log_artifact(self.parent, str(report))
            figures = report.parent / report.stem
            if figures.is_dir():
                self.client.log_artifacts(self.parent, str(figures), artifact_path=figures.name)
        self.client.set_tag(self.parent, "ebsdray.report", str(report))
        self.client.set_terminated(self.parent, FINISHED)
