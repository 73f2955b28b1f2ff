"""Train a diffusion denoiser (multimodal, EBSD-only or PL-only) with Ray Train.

    python jobs/train.py model=multimodal trainer=cpu_small
    python jobs/train.py model=pl trainer=ci name=smoke
    ray job submit --working-dir . -- python jobs/train.py model=ebsd trainer=gpu_paper

Needs a dataset from ``jobs/generate_data.py`` (``data_dir``, default ``$EBSDRAY_HOME/data``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from ebsdray.distributed.train import fit
from ebsdray.training import TrainConfig

_RAY_KEYS = ("num_workers", "use_gpu", "cpus_per_worker", "allow_autoscale", "max_failures", "name")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    trainer = {k: v for k, v in c["trainer"].items() if k not in _RAY_KEYS}
    train_cfg = TrainConfig(
        name=c["name"],
        variant=c["model"],
        data_dir=c["data_dir"],
        run_dir=c["run_dir"],
        seed=c["seed"],
        tracking_uri=c["mlflow"]["tracking_uri"],
        experiment=c["mlflow"]["experiment"],
        **trainer,
    )
    t = c["trainer"]
    metrics = fit(
        train_cfg,
        num_workers=t["num_workers"],
        use_gpu=t["use_gpu"],
        cpus_per_worker=t["cpus_per_worker"],
        allow_autoscale=t["allow_autoscale"],
        max_failures=t["max_failures"],
        storage_path=f"{c['paths']['root']}/ray_results",
    )
    print(f"trained {train_cfg.name}: {metrics}")
    print(f"checkpoints: {train_cfg.run_dir}/best.pt (and last.pt)")
    print(f"MLflow: mlflow ui --backend-store-uri {train_cfg.tracking_uri}")


if __name__ == "__main__":
    main()
