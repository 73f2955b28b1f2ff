"""Distributed training with Ray Train (``TorchTrainer``): gloo on CPU, NCCL on GPU.

The per-worker function is the plain loop of :mod:`ebsdray.training.loop`; this module only adapts
it to Ray (rank, DDP wrapping, ``ray.train.report`` as the per-validation barrier) and sizes the
worker group against the cluster, refusing a request the cluster cannot hold instead of letting
Ray Train V2 retry forever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from torch import nn

from ebsdray.dataset_dir import read_manifest
from ebsdray.distributed.cluster import connect
from ebsdray.training.config import TrainConfig
from ebsdray.training.loop import train


@dataclass
class RayWorkerContext:
    """The loop's view of a Ray Train worker."""

    rank: int
    world_size: int
    device: torch.device

    @classmethod
    def current(cls) -> RayWorkerContext:
        ctx = ray.train.get_context()
        return cls(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())

    def prepare(self, net: nn.Module) -> nn.Module:
        # DDP wrap (gloo on CPU, NCCL on GPU); the loop keeps the unwrapped module for EMA/saving.
        return (
            ray.train.torch.prepare_model(net, move_to_device=False) if self.world_size > 1 else net
        )

    def report(self, metrics: dict[str, float]) -> None:
        ray.train.report(metrics)  # every rank, equally often: it is a barrier


def _worker(config: dict[str, Any]) -> None:
    train(TrainConfig.from_dict(config), RayWorkerContext.current())


def check_resources(num_workers: int, use_gpu: bool, cpus_per_worker: float) -> None:
    """Refuse worker groups the connected cluster cannot place (Ray Train V2 would wait forever).

    Autoscaling clusters report only what is up now; set ``allow_autoscale`` in the job config to
    skip this check there.
    """
    total = ray.cluster_resources()
    need_cpu = num_workers * cpus_per_worker
    if total.get("CPU", 0) < need_cpu:
        raise ValueError(
            f"{num_workers} workers x {cpus_per_worker} CPUs need {need_cpu} CPUs; the cluster has "
            f"{total.get('CPU', 0):g}. Lower trainer.num_workers or trainer.cpus_per_worker."
        )
    if use_gpu and total.get("GPU", 0) < num_workers:
        raise ValueError(
            f"{num_workers} GPU workers requested; the cluster has {total.get('GPU', 0):g} GPUs. "
            "Lower trainer.num_workers, or use trainer=cpu_small on CPU machines."
        )


def fit(
    cfg: TrainConfig,
    *,
    num_workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    storage_path: str,
    allow_autoscale: bool = False,
    max_failures: int = 0,
) -> dict[str, float]:
    """Run the loop on ``num_workers`` Ray Train workers; returns rank 0's last metrics.

    ``num_workers=0`` runs the loop in this process (Ray Train's local mode, used by tests).
    """
    read_manifest(cfg.data_dir, ("train", "val"))  # fail fast, before any cluster starts
    if num_workers == 0:
        return train(cfg)
    connect(None)
    if not allow_autoscale:
        check_resources(num_workers, use_gpu, cpus_per_worker)
    trainer = TorchTrainer(
        _worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    trainer.fit()
    # Rank 0 wrote its last validation metrics beside the checkpoints.
    return json.loads((Path(cfg.run_dir).expanduser().resolve() / "metrics.json").read_text())
