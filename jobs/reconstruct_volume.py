"""Reconstruct every section of a serial-sectioning volume on Ray; outputs, figures, MLflow.

    python jobs/reconstruct_volume.py                        # synthetic test volume, defaults
    python jobs/reconstruct_volume.py volume=example crop=[96,96] observation.ebsd_fraction=0.25
    ray job submit --working-dir . -- python jobs/reconstruct_volume.py

Config: configs/reconstruct_volume.yaml. The work is in :mod:`ebsdray.volume_job`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ebsdray.volume_job import JobInterrupted, run


@hydra.main(version_base="1.3", config_path="../configs", config_name="reconstruct_volume")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    config = OmegaConf.to_container(cfg, resolve=True)
    sweep = None
    if hc.mode == RunMode.MULTIRUN:
        stamp = Path(hc.sweep.dir).name
        sweep = {"dir": str(hc.sweep.dir), "name": f"sweep {stamp}"}
        default_dir = Path(config["paths"]["reconstructions"]) / stamp / str(hc.job.num)
    else:
        default_dir = Path(config["paths"]["reconstructions"]) / Path(hc.run.dir).name
    config["output_dir"] = config["output_dir"] or str(default_dir)
    try:
        summary = run(config, sweep=sweep)
    except JobInterrupted as stopped:  # one line, no traceback: nothing went wrong
        print(f"\n{stopped}", file=sys.stderr)
        sys.exit(130)
    overall = summary["overall"]
    print(f"\nreconstructed {summary['sections']} sections in {summary['wall_seconds']:.0f} s")
    for key in (
        "chamfer",
        "sobel_chamfer",
        "disorientation_mean_deg",
        "bilinear_disorientation_mean_deg",
    ):
        if key in overall:
            print(f"  {key:34s} {overall[key]:.3f}")
    print(f"outputs:  {summary['output_dir']}  (reconstruction.zarr, summary.png, sections/)")
    print(
        f"MLflow:   run {summary['mlflow_run_id']}; mlflow ui --backend-store-uri "
        f"{summary['mlflow_tracking_uri']}"
    )


if __name__ == "__main__":
    main()
