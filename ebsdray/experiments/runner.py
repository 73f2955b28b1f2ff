"""Run a sweep: every configuration of a plan, K from prefixes of one sample set, a done-record per
configuration, one MLflow run per (configuration, K) nested under the sweep's parent, the report.

    summary = run_sweep(config)     # config: configs/sweep.yaml, resolved (jobs/sweep.py)

Outputs in ``output_dir``: ``records/<fingerprint>.json`` (one per finished configuration: its
per-section metrics at every K and its reliability sums), ``results.parquet`` (every row of the
plan), ``sweep.json`` (the plan and the MLflow parent), and the report (``report``, default
``output_dir/results.md``, figures beside it in ``results/``).

Restart: a configuration whose record exists (same fingerprint: configuration, volume, PL
setting, model, sampler, K values, precision) is not computed again; its MLflow runs are
logged only if the store lacks a FINISHED run of the same key under the same parent (a run left
RUNNING by an interrupted sweep is deleted and logged again). MLflow is a view of the records.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ebsdray.api import Budget, Placement, ReplicaResources, SamplerSpec, reconstruct
from ebsdray.diffusion.pretrained import DiffusionModel, load_model
from ebsdray.experiments.measure import baseline_metrics, measure, prefix_results
from ebsdray.experiments.plan import (
    BASELINES,
    Config,
    check_samples,
    config_facts,
    expand_plan,
    fingerprint,
)
from ebsdray.experiments.tracking import SweepTracker
from ebsdray.experiments.volumes import load_volume, volume_group
from ebsdray.observation import ObservedVolume, observe

PL_SETTING_KEYS = {"pl_noise", "corruptions", "ebsd_noise"}
SAMPLER_KEYS = {f.name for f in fields(SamplerSpec)}


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a sweep; finished configurations are kept and a rerun resumes."""


@dataclass
class Context:
    """A sweep's resolved settings, and the models and volumes it has loaded (lazily)."""

    config: dict[str, Any]
    samples: list[int]
    sampler: dict[str, Any]  # SamplerSpec fields as configured
    models: dict[str, DiffusionModel] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        c = self.config
        return {
            "volumes": c["volumes"],
            "pl_settings": c["pl_settings"],
            "models": c["models"],
            "sampler": self.sampler,
            "samples": self.samples,
            "precision": c["precision"],
        }

    def model(self, name: str) -> DiffusionModel:
        if name not in self.models:
            self.models[name] = load_model(self.config["models"][name])
        return self.models[name]

    def volume(self, name: str):
        if name not in self.volumes:
            self.volumes[name] = load_volume(self.config["volumes"][name])[0]
        return self.volumes[name]


class RecordStore:
    """Done-records of a sweep, one JSON file per finished configuration (written atomically)."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "records"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, fp: str) -> Path:
        return self.dir / f"{fp}.json"

    def get(self, fp: str) -> dict[str, Any] | None:
        p = self.path(fp)
        return json.loads(p.read_text()) if p.exists() else None

    def put(self, record: dict[str, Any]) -> None:
        p = self.path(record["fingerprint"])
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, default=float))
        os.replace(tmp, p)  # a record exists only once complete: restart never reads half of one


def observation_for(cfg: Config, volume, pl_settings: Mapping[str, Any]) -> ObservedVolume:
    """The observation of ``cfg`` (EBSD fraction and pattern, PL setting, seed)."""
    setting = dict(pl_settings[cfg.pl])
    unknown = set(setting) - PL_SETTING_KEYS
    if unknown:
        raise ValueError(f"pl_settings.{cfg.pl}: unknown keys {sorted(unknown)}")
    return observe(
        volume,
        ebsd_fraction=cfg.fraction,
        pattern=cfg.pattern,
        pl_noise=float(setting.get("pl_noise", 0.05)),
        ebsd_noise=float(setting.get("ebsd_noise", 0.0)),
        corruptions=dict(setting.get("corruptions") or {}),
        seed=cfg.seed,
    )


def _sum_curves(total: dict[str, Any], part: dict[str, Any]) -> None:
    for name, sums in part.items():
        into = total.setdefault(name, {k: [0.0] * len(v) for k, v in sums.items()})
        for k, v in sums.items():
            into[k] = [a + b for a, b in zip(into[k], v, strict=True)]


def compute_model(cfg: Config, ctx: Context) -> dict[str, Any]:
    """Draw max(K) samples per section of ``cfg``'s observation and measure every K prefix.

    Returns
    -------
    The record's body: ``rows`` (one per section and K: ``section``, ``K``, metrics),
    ``curves`` (``{K: {"ebsd" | "pl": binned sums over sections}}``), ``info``.
    """
    c = ctx.config
    model = ctx.model(cfg.model)
    obs = observation_for(cfg, ctx.volume(cfg.volume), c["pl_settings"])
    budget = Budget(samples=max(ctx.samples), sampler=SamplerSpec(**ctx.sampler))
    t0 = time.perf_counter()
    result = reconstruct(
        obs,
        model,
        budget,
        seed=cfg.seed,
        keep_samples=True,
        precision=c["precision"],
        progress=bool(c["progress"]) and c["cluster"] is not None,  # long configs: a bar
        placement=Placement(
            cluster=c["cluster"], replicas=c["replicas"], resources=ReplicaResources(**c["replica"])
        ),
        evaluate=False,  # measured below, at every K
    )
    t_sample = time.perf_counter() - t0
    rows, curves = [], {}
    for k, section, res, samples in prefix_results(result, ctx.samples):
        metrics, part = measure(res, section, model.codec, model.variant, samples)
        rows.append({"section": section.index, "K": k, "model": cfg.model, **metrics})
        _sum_curves(curves.setdefault(str(k), {}), part)
    info = {
        "samples": int(sum(r["info"]["samples"] for r in result.records)),
        "network_evaluations": int(
            sum(r["info"].get("network_evaluations", 0) for r in result.records)
        ),
        "sampling_seconds": t_sample,
        "seconds": time.perf_counter() - t0,
        "precision": "+".join(sorted({r["info"].get("precision", "") for r in result.records})),
        "variant": model.variant,
    }
    return {"rows": rows, "curves": curves, "info": info}


def compute_baselines(cfg: Config, ctx: Context) -> dict[str, Any]:
    """Sobel / nearest / bilinear on ``cfg``'s observation (no samples; rows with K = 0)."""
    codec = ctx.model(next(iter(ctx.config["models"]))).codec  # every shipped model: one codec
    obs = observation_for(cfg, ctx.volume(cfg.volume), ctx.config["pl_settings"])
    t0 = time.perf_counter()
    rows = []
    for index in range(len(obs)):
        for name, metrics in baseline_metrics(obs.section(index, codec), codec).items():
            rows.append({"section": index, "K": 0, "model": name, **metrics})
    return {"rows": rows, "curves": {}, "info": {"seconds": time.perf_counter() - t0}}


def _identity(cfg: Config, ctx: Context) -> dict[str, Any]:
    spec = ctx.config["volumes"][cfg.volume]
    return {**asdict(cfg), "group": volume_group(cfg.volume, spec)}


def _record(cfg: Config, ctx: Context, fp: str) -> dict[str, Any]:
    body = compute_baselines(cfg, ctx) if cfg.model == BASELINES else compute_model(cfg, ctx)
    ident = _identity(cfg, ctx)
    for row in body["rows"]:
        row |= {k: v for k, v in ident.items() if k != "model"}
    return {"fingerprint": fp, "facts": config_facts(cfg, ctx.facts()), "identity": ident, **body}


def _prepare(config: dict[str, Any]) -> tuple[Context, list[Config], Path]:
    """Checks that can fail before any compute: the plan, the sampler, the replica settings."""
    plan = config["plan"]
    configs = expand_plan(plan, config["volumes"], config["pl_settings"], config["models"])
    sampler = dict(config["sampler"])  # K comes from plan.samples; fixed K per section
    unknown = set(sampler) - SAMPLER_KEYS
    if unknown:
        raise ValueError(f"unknown sampler keys {sorted(unknown)}; known: {sorted(SAMPLER_KEYS)}")
    SamplerSpec(**sampler)  # a bad value fails here, not after an hour
    ReplicaResources(**config["replica"])
    if not config.get("output_dir"):
        raise ValueError("output_dir must be set")
    out = Path(config["output_dir"]).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(config=config, samples=check_samples(plan["samples"]), sampler=sampler)
    return ctx, configs, out


def run_sweep(config: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) the sweep of a resolved ``configs/sweep.yaml`` config.

    Returns
    -------
    ``{"computed": [labels], "skipped": [labels], "output_dir", "report", "results",
    "mlflow_parent_run_id", "mlflow_tracking_uri", "wall_seconds"}``.
    """
    t0 = time.perf_counter()
    ctx, configs, out = _prepare(config)
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    store = RecordStore(out)
    ml = config["mlflow"]
    tracker = SweepTracker(ml["tracking_uri"], ml["experiment"], str(out), config)
    try:
        computed, skipped, records = _run_configs(configs, ctx, store, tracker)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: finished configurations stay recorded
        tracker.client.set_terminated(tracker.parent, "KILLED")
        done = len(list(store.dir.glob("*.json")))
        raise SweepInterrupted(
            f"interrupted: {done} finished configurations are kept in {out}; run the same "
            "command again to resume"
        ) from None
    results = out / "results.parquet"
    rows = [r for rec in records for r in rec["rows"]]
    pq.write_table(pa.Table.from_pylist(_uniform(rows)), results)
    summary = {
        "computed": computed,
        "skipped": skipped,
        "output_dir": str(out),
        "results": str(results),
        "mlflow_parent_run_id": tracker.parent,
        "mlflow_tracking_uri": tracker.uri,
    }
    report = Path(config.get("report") or out / "results.md").expanduser().resolve()
    summary["report"] = str(report)
    summary["wall_seconds"] = time.perf_counter() - t0
    _write_report(records, ctx, summary, report)
    tracker.finish(report, results, summary["wall_seconds"])
    (out / "sweep.json").write_text(json.dumps(_sweep_facts(config, summary), indent=1))
    return summary


def _run_configs(configs: list[Config], ctx: Context, store: RecordStore, tracker: SweepTracker):
    """Compute (or find the record of) every configuration and log its runs, in plan order."""
    computed, skipped, records = [], [], []
    facts = ctx.facts()
    for i, cfg in enumerate(configs, 1):
        fp = fingerprint(config_facts(cfg, facts))
        record = store.get(fp)
        if record is None:
            record = _record(cfg, ctx, fp)
            store.put(record)
            computed.append(cfg.label)
            how = f"{record['info'].get('samples', 0)} samples, {record['info']['seconds']:.1f} s"
        else:
            skipped.append(cfg.label)
            how = "done before, skipped"
        tracker.log(record)
        records.append(record)
        if ctx.config["progress"]:
            print(f"[{i}/{len(configs)}] {cfg.label}: {how}", flush=True)
    return computed, skipped, records


def _write_report(records, ctx: Context, summary: dict[str, Any], report: Path) -> None:
    from ebsdray.experiments.report import write_report  # matplotlib only when reporting

    write_report(records, ctx.config, summary, report)


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the same keys (missing metrics NaN), so Parquet gets one schema."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k, np.nan) for k in keys} for r in rows]


def _sweep_facts(config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "plan": config["plan"],
        "command": config.get("command"),
        "mlflow_parent_run_id": summary["mlflow_parent_run_id"],
        "mlflow_tracking_uri": summary["mlflow_tracking_uri"],
        "computed": len(summary["computed"]),
        "skipped": len(summary["skipped"]),
        "wall_seconds": summary["wall_seconds"],
    }
