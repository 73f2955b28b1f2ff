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

import dataclasses
import inspect
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ebsdray.api import (
    Budget,
    Placement,
    ReplicaResources,
    SamplerSpec,
    prepare_output,
    reconstruct,
)
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.volume import Volume
from ebsdray.diffusion.pretrained import load_model
from ebsdray.figures import pixel_size, summary_figure
from ebsdray.io import example_ebsd_map_path, open_volume, read_ebsd_map
from ebsdray.io.volume_store import VolumeStore
from ebsdray.observation import observe
from ebsdray.tracking import flatten, resolve_tracking_uri, start_run, sweep_parent

KEYS = {
    "volume", "synthetic", "crop", "sections", "observation", "sampler", "budget", "model",
    "replicas", "replica", "cluster", "samples_per_request", "seed", "keep_samples", "precision",
    "output_dir", "evaluate", "figures", "mlflow", "progress", "grain_tolerance_deg",
}  # fmt: skip


def load_input(volume: str | None, synthetic: dict[str, Any], crop: list[int] | None):
    """The volume to reconstruct and a description of where it came from.

    Parameters
    ----------
    volume : a zarr volume store path, an EBSD map file (``.ang``, ``.ctf``, pymicro ``.h5``;
        one section, read by :func:`ebsdray.read_ebsd_map`), ``"example"`` (the shipped real Ti
        EBSD map, one section), or None (a synthetic test volume from ``synthetic``:
        :func:`ebsdray.synthetic_volume` keywords with ``shape`` and ``seed``).
    crop : optional ``[H, W]``: the top-left window of every section (e.g. to make the real
        101 x 101 map divisible by a grid factor).
    """
    if volume is None:
        vol: Volume | VolumeStore = synthetic_volume(
            **_checked("synthetic", synthetic, synthetic_volume)
        )
        source = {"synthetic": synthetic}
    elif str(volume) == "example":
        vol = read_ebsd_map(example_ebsd_map_path())
        source = {"example": example_ebsd_map_path().name}
    elif (path := Path(str(volume)).expanduser().resolve()).is_file():
        vol = read_ebsd_map(path)  # a store is a directory; a file is a map (or a clear error)
        source = {"map": str(path)}
    else:
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


def _checked(
    section: str, values: dict[str, Any], target: Callable | type, reserved: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``values`` if every key is a parameter of ``target``, else a ValueError naming the typo
    (``+budget.sampels=4`` would otherwise end in a bare TypeError deep inside)."""
    if dataclasses.is_dataclass(target):
        known = {f.name for f in dataclasses.fields(target) if f.init}
    else:
        known = set(inspect.signature(target).parameters)
    known -= set(reserved)  # set by the job itself
    unknown = set(values) - known
    if unknown:
        names = ", ".join(f"{section}.{k}" for k in sorted(unknown))
        raise ValueError(
            f"unknown config keys {names}; known in {section}: {sorted(known)}. "
            "Check the spelling of the override."
        )
    return values


IDENTITY_COLUMNS = ("run_id", "model", "variant", "K", "ebsd_fraction", "pattern", "seed")
# Config entries that do not change results (where things run and are written), kept out of the
# MLflow params; everything else is logged, flattened ("observation.ebsd_noise", ...).
_NOT_PARAMS = {"paths", "mlflow", "progress", "figures", "output_dir", "replica", "cluster"}


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, as ``ray job stop`` sends) during a job; finished sections are kept."""


def _row(record: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    row = {**identity, "section": record["section"]}
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


def run_params(config: dict[str, Any], model, budget: Budget, observation, source) -> dict:
    """MLflow params of a job: every config value that changes results, flattened, plus the
    short names a compare view lines runs up by (K, ebsd_fraction, pattern, model, ...)."""
    spec = observation.spec
    resolved = {k: v for k, v in config.items() if k not in _NOT_PARAMS | {"volume", "synthetic"}}
    # with the defaults the config left out: budget.samples, ..., sampler.name, sampler.steps, ...
    resolved["budget"] = {k: v for k, v in budget.to_dict().items() if k != "sampler"}
    resolved["sampler"] = budget.sampler.to_dict()
    resolved["observation"] = spec.to_dict() | {"corruptions": spec.corruptions or "none"}
    resolved["sections"] = "all" if config["sections"] is None else config["sections"]
    return {
        **flatten(resolved),
        **flatten({"volume": source}),
        "K": budget.samples,
        "ebsd_fraction": spec.ebsd_fraction,
        "pattern": spec.pattern,
        "sampler": budget.sampler.name,
        "pl_corruption": "+".join(sorted(spec.corruptions)) or "none",
        "model": model.source,
        "variant": model.variant,
        "section_count": len(observation),
    }


class _SectionLogger:
    """Per-section metrics under ``section/<name>`` (step = section index), so the run page's
    plain names stay the overall means; the first few section figures as artifacts."""

    def __init__(
        self, out: Path, identity: dict[str, Any], max_figures: int, guard: _Deferred
    ) -> None:
        self.out, self.identity, self.figures_left, self.guard = out, identity, max_figures, guard

    def __call__(self, record: dict[str, Any]) -> None:
        numbers = {
            k: float(v)
            for k, v in _row(record, {}).items()
            if k != "section" and not isinstance(v, str)
        }
        step = record["section"]
        png = self.out / "sections" / f"section_{step:05d}.png"
        with self.guard:
            mlflow.log_metrics({f"section/{k}": v for k, v in numbers.items()}, step=step)
            if png.exists() and self.figures_left > 0:
                mlflow.log_artifact(str(png), artifact_path="sections")
                self.figures_left -= 1


class _Deferred:
    """Interrupts that arrive during an MLflow write wait for its end: a KeyboardInterrupt
    inside sqlite's commit leaves the tracking database locked, and the run could then not be
    marked KILLED (``database is locked``)."""

    def __init__(self) -> None:
        self.depth, self.pending = 0, False

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.pending:
            self.pending = False
            raise KeyboardInterrupt


@contextmanager
def _interrupts(out: Path, store, guard: _Deferred) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the job as :class:`JobInterrupted` with a one-line message saying
    what is kept and how to resume; the MLflow run is marked KILLED (it did not fail). One that
    arrives inside ``guard`` (an MLflow write) takes effect when the write is done."""

    def stop(signum, frame):  # SIGTERM: the same path as Ctrl-C
        if guard.depth:
            guard.pending = True
            return
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(n, stop) for n in signals] if main_thread else []
    try:
        yield
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        done = len(store.completed())
        raise JobInterrupted(
            f"interrupted: {done} finished sections are kept in {out}; run the same command "
            "again (same output_dir) to resume"
        ) from None
    finally:
        for n, handler in zip(signals, previous, strict=False):
            signal.signal(n, handler)


def _prepare(config: dict[str, Any]):
    """Every check that can fail, before any MLflow run or sampling: sampler, budget, placement,
    keys, input, model, observation, output directory (resumed when it holds the same job)."""
    _check_keys(config)
    sampler = SamplerSpec(**_checked("sampler", config["sampler"], SamplerSpec))
    budget_config = _checked("budget", config["budget"], Budget, ("sampler",))
    budget = Budget(**budget_config, sampler=sampler)
    placement = Placement(
        cluster=config["cluster"],
        replicas=config["replicas"],
        resources=ReplicaResources(**_checked("replica", config["replica"], ReplicaResources)),
        samples_per_request=config["samples_per_request"],
    )
    if not config.get("output_dir"):
        raise ValueError("output_dir must be set (the job script defaults it under paths)")
    volume, source = load_input(config["volume"], config["synthetic"], config["crop"])
    model = load_model(config["model"])
    seed = int(config["seed"])
    obs_config = _checked("observation", config["observation"], observe, ("volume", "seed"))
    observation = observe(volume, **obs_config, seed=seed)
    out = Path(config["output_dir"]).expanduser().resolve()
    store = prepare_output(
        out,
        observation,
        model,
        budget,
        seed=seed,
        sections=config["sections"],
        precision=config["precision"],
        keep_samples=config["keep_samples"],
        grain_tolerance_deg=config["grain_tolerance_deg"],
        identity={"volume": source},
        store_attrs={"config": config},
    )
    return budget, placement, source, model, observation, out, store


def _reconstruct(config, observation, model, budget, placement, store, on_section):
    return reconstruct(
        observation,
        model,
        budget,
        seed=int(config["seed"]),
        sections=config["sections"],
        keep_samples=config["keep_samples"],
        precision=config["precision"],
        grain_tolerance_deg=config["grain_tolerance_deg"],
        placement=placement,
        output_dir=store,
        figures=config["figures"],
        evaluate=config["evaluate"],
        progress=config["progress"],
        on_section=on_section,
    )


def _write_tables(out: Path, records, identity, overall, title: str, pixel) -> None:
    """``metrics.parquet`` (one row per section, with the run's identity columns so tables of
    several runs concatenate) and ``summary.png``; both logged to the active run."""
    pq.write_table(
        pa.Table.from_pylist([_row(r, identity) for r in records]), out / "metrics.parquet"
    )
    summary_figure(records, out / "summary.png", title=title, pixel=pixel)
    mlflow.log_metrics(overall)
    for path in ("summary.png", "config.yaml", "metrics.parquet"):
        mlflow.log_artifact(str(out / path))


def run(config: dict[str, Any], sweep: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one reconstruction job from a resolved config (``configs/reconstruct_volume.yaml``).

    Every check that can fail (config values, the model, the volume, the output dir) runs before
    any sampling. Returns the summary (also written to ``output_dir/summary.json``).

    Raises
    ------
    JobInterrupted : on Ctrl-C or SIGTERM; finished sections are kept and a rerun resumes.
    """
    t0 = time.perf_counter()
    budget, placement, source, model, observation, out, store = _prepare(config)
    ml = config["mlflow"]
    run_file = out / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    parent = (
        sweep_parent(ml["tracking_uri"], ml["experiment"], sweep["dir"], sweep["name"])
        if sweep
        else None
    )
    name = f"{model.variant}-K{budget.samples}-f{observation.spec.ebsd_fraction:g}"
    with start_run(ml["tracking_uri"], ml["experiment"], name, run_id, parent) as active:
        run_file.write_text(json.dumps({"run_id": active.info.run_id}))
        params = run_params(config, model, budget, observation, source)
        identity = {"run_id": active.info.run_id} | {
            k: params[k] for k in IDENTITY_COLUMNS if k in params
        }
        identity["seed"] = int(config["seed"])
        if run_id is None:
            mlflow.log_params(params)
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        guard = _Deferred()
        logger = _SectionLogger(out, identity, int(ml["section_figures"]), guard)
        with _interrupts(out, store, guard):
            result = _reconstruct(config, observation, model, budget, placement, store, logger)
        records = result.records
        used = "+".join(sorted({r["info"].get("precision", "") for r in records} - {""}))
        mlflow.set_tag("precision_used", used)
        overall = summarize(records) if config["evaluate"] else {}
        pixel = pixel_size(observation.truth.attrs)
        _write_tables(out, records, identity, overall, f"{name}  ({out.name})", pixel)
        summary = {
            "output_dir": str(out),
            "store": str(out / "reconstruction.zarr"),
            "sections": len(records),
            "precision": config["precision"],
            "precision_used": used,
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
