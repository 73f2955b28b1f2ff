"""The paper's studies as one sweep, side by side in MLflow, and a results report with verdicts.

    python jobs/sweep.py size=smoke                                  # minutes on 2 CPU cores
    python jobs/sweep.py size=default report=$PWD/docs/results.md    # the committed report
    ray job submit --working-dir . -- python jobs/sweep.py size=full  # a GPU cluster

Config: configs/sweep.yaml (plans in configs/size/). The work is in :mod:`ebsdray.experiments`.
Running the same command again skips the configurations that are finished.
"""

from __future__ import annotations

import shlex
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ebsdray.experiments import run_sweep
from ebsdray.experiments.runner import SweepInterrupted


def _stop(signum, frame):
    raise KeyboardInterrupt


@hydra.main(version_base="1.3", config_path="../configs", config_name="sweep")
def main(cfg: DictConfig) -> None:
    config = OmegaConf.to_container(cfg, resolve=True)
    overrides = HydraConfig.get().overrides.task
    config["command"] = config["command"] or shlex.join(["python", "jobs/sweep.py", *overrides])
    signal.signal(signal.SIGTERM, _stop)  # ray job stop: the same path as Ctrl-C
    try:
        summary = run_sweep(config)
    except SweepInterrupted as stopped:  # one line, no traceback: nothing went wrong
        print(f"\n{stopped}", file=sys.stderr)
        sys.exit(130)
    print(
        f"\n{len(summary['computed'])} configurations computed, {len(summary['skipped'])} "
        f"skipped (finished before) in {summary['wall_seconds']:.0f} s"
    )
    print(f"report:   {summary['report']}")
    print(f"results:  {summary['results']}")
    print(
        f"MLflow:   parent run {summary['mlflow_parent_run_id']}; mlflow ui --backend-store-uri "
        f"{summary['mlflow_tracking_uri']}"
    )


if __name__ == "__main__":
    main()
