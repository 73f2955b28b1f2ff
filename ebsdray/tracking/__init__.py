"""MLflow helpers, used from the driver or rank 0 only.

The tracking URI is always absolute: MLflow's default (``sqlite:///mlflow.db`` relative to the cwd)
would scatter stores across throwaway Ray working dirs. ``MLFLOW_TRACKING_URI`` from the
environment wins over the configured default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow


def resolve_tracking_uri(default: str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``default`` with a sqlite path made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri[len(prefix) :]).expanduser()
        if not path.is_absolute():
            path = path.resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = prefix + str(path)
    return uri


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> flat ``a.b.c`` keys with string values (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def ensure_experiment(tracking_uri: str, experiment: str) -> str:
    """The id of ``experiment`` in the (absolute) store, created if needed. In a sqlite store its
    artifacts go beside the database (MLflow's default ``./mlruns`` under the cwd is lost when a
    Ray job's working dir is thrown away)."""
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment).as_uri()
    return mlflow.create_experiment(experiment, artifact_location=location)


def start_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    run_id: str | None = None,
    parent_run_id: str | None = None,
) -> mlflow.ActiveRun:
    """Start (or resume, with ``run_id``) a run in an absolute store; nested under a parent."""
    if run_id is not None:
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
        return mlflow.start_run(run_id=run_id)
    ensure_experiment(tracking_uri, experiment)
    mlflow.set_experiment(experiment)
    tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else None
    return mlflow.start_run(run_name=run_name, tags=tags)


def sweep_parent(tracking_uri: str, experiment: str, sweep: str, name: str) -> str:
    """The id of a sweep's parent run, found by its ``ebsdray.sweep`` tag or created.

    Parameters
    ----------
    sweep : what identifies the sweep (e.g. its output or Hydra sweep directory); every run of
        the same sweep, and a restarted sweep, finds the same parent.
    name : the parent's run name when it is created.
    """
    exp_id = ensure_experiment(tracking_uri, experiment)
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`ebsdray.sweep` = '{sweep}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    return client.create_run(exp_id, run_name=name, tags={"ebsdray.sweep": sweep}).info.run_id
