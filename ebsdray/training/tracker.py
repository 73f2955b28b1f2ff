"""MLflow logging of a training run (rank 0 only): params, curves, sample figures, best model."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import mlflow

from ebsdray.tracking import flatten, start_run
from ebsdray.training.config import TrainConfig


class Tracker:
    """One MLflow run per training run; a resumed run continues the same MLflow run.

    With an empty ``cfg.tracking_uri`` nothing is logged (figures are still written to the run
    dir), so the loop runs without a tracking store in tests and profiling.
    """

    def __init__(self, cfg: TrainConfig, run_id: str | None = None) -> None:
        self.cfg = cfg
        self.figures_dir = Path(cfg.run_dir).expanduser().resolve() / "figures"
        self.run_id: str | None = None
        if not cfg.tracking_uri:
            return
        run = start_run(cfg.tracking_uri, cfg.experiment, cfg.name, run_id=run_id)
        self.run_id = run.info.run_id
        if run_id is None:
            mlflow.log_params(flatten(cfg.to_dict()))

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run_id:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "step"}, step=step)

    def figure(self, fig, name: str) -> None:
        """Write the figure beside the checkpoints and log it as an artifact."""
        path = self.figures_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        if self.run_id:
            mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent))

    def finish(self, best_checkpoint: Path) -> None:
        if self.run_id:
            mlflow.set_tag("best_checkpoint", str(best_checkpoint))
            mlflow.end_run()
