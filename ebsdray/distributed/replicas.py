"""Model replicas on Ray: actors that hold the network, aggregation as tasks.

Each replica loads the model once and answers ``draw`` requests. Replicas restart when their
process dies and Ray retries their requests (``max_restarts=-1, max_task_retries=-1``): a retried
request draws the same samples, because samples are seeded by (seed, section, index). On CPU
clusters replicas take a fraction of a CPU each, so aggregation tasks can always be scheduled
(two whole-CPU replicas on two CPUs starve them and the job hangs).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import ray
import torch

from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.distributed.work import draw, finish
from ebsdray.precision import apply_deterministic_settings


@dataclass(frozen=True)
class ReplicaResources:
    """Resources of one model replica and of one aggregation task.

    Attributes
    ----------
    num_gpus : GPUs per replica (fractions share a GPU); 0 = run on CPU.
    num_cpus : CPUs per replica (fractional on CPU-only clusters).
    threads : torch intra-op threads per replica (and for in-process runs): part of what the
        bits depend on, as fp32 convolutions round differently with different thread counts.
    aggregation_cpus : CPUs per aggregation task.
    allow_autoscale : skip the check that the cluster has room now (an autoscaler adds nodes).
    """

    num_gpus: float = 0.0
    num_cpus: float = 0.75
    threads: int = 1
    aggregation_cpus: float = 0.25
    allow_autoscale: bool = False

    def __post_init__(self) -> None:
        if self.num_gpus < 0 or self.num_cpus <= 0 or self.aggregation_cpus <= 0:
            raise ValueError(
                "replica resources must be positive (num_cpus, aggregation_cpus) or >= 0 "
                f"(num_gpus); got {self}"
            )
        if self.threads < 1:
            raise ValueError(f"replica threads must be >= 1; got {self.threads}")


def default_replicas(resources: ReplicaResources) -> int:
    """As many replicas as the connected cluster can place now (at least one)."""
    total = ray.cluster_resources()
    if resources.num_gpus > 0:
        return max(1, int(total.get("GPU", 0) / resources.num_gpus))
    free = total.get("CPU", 1) - resources.aggregation_cpus
    return max(1, int(free / resources.num_cpus))


def check_room(replicas: int, resources: ReplicaResources) -> None:
    """Refuse replica sets the cluster cannot place (the job would wait forever)."""
    if resources.allow_autoscale:
        return
    total = ray.cluster_resources()
    need_cpu = replicas * resources.num_cpus + resources.aggregation_cpus
    need_gpu = replicas * resources.num_gpus
    if need_cpu > total.get("CPU", 0) + 1e-9 or need_gpu > total.get("GPU", 0) + 1e-9:
        raise ValueError(
            f"{replicas} replicas x ({resources.num_cpus} CPU, {resources.num_gpus} GPU) plus "
            f"{resources.aggregation_cpus} CPU for aggregation do not fit this cluster "
            f"({total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU). Use fewer replicas or "
            "smaller fractions, or set allow_autoscale on an autoscaling cluster."
        )


class SamplerReplica:
    """One model replica (a Ray actor): loads the network once, draws posterior samples."""

    def __init__(self, model: DiffusionModel, threads: int, device: str) -> None:
        torch.set_num_threads(threads)
        apply_deterministic_settings(device)  # GPUs: same seed, same samples on any replica
        self.model = model.to(device)

    def draw(self, section, sampler, seed, indices, precision):
        return draw(self.model, section, sampler, seed, indices, precision)

    def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """Replicas as actors, aggregation as tasks; handles are ObjectRefs."""

    def __init__(
        self, model: DiffusionModel, replicas: int, resources: ReplicaResources, name: str = ""
    ) -> None:
        check_room(replicas, resources)
        self.replicas = replicas
        self.resources = resources
        self.name = name or f"ebsdray-{uuid.uuid4().hex[:8]}"
        device = "cuda" if resources.num_gpus > 0 else "cpu"
        model_ref = ray.put(model.to("cpu"))
        actor = ray.remote(SamplerReplica)
        self.actors = [
            actor.options(
                name=f"{self.name}-replica-{i}",
                num_cpus=resources.num_cpus,
                num_gpus=resources.num_gpus,
                max_restarts=-1,
                max_task_retries=-1,
            ).remote(model_ref, resources.threads, device)
            for i in range(replicas)
        ]
        self._load = [0] * replicas
        self._owner: dict[Any, int] = {}
        self._finish = ray.remote(finish).options(num_cpus=resources.aggregation_cpus)

    def put(self, obj: Any) -> Any:
        return ray.put(obj)

    def draw(self, section, sampler, seed, indices, precision):
        r = min(range(self.replicas), key=self._load.__getitem__)  # least loaded replica
        samples, facts = (
            self.actors[r]
            .draw.options(num_returns=2)
            .remote(section, sampler, seed, list(indices), precision)
        )
        self._load[r] += 1
        self._owner[facts] = r
        return samples, facts

    def finish(self, section, info, spec, samples):
        return self._finish.remote(section, info, spec, *samples)

    def wait(self, handles):
        ready, _ = ray.wait(list(handles), num_returns=1)
        return ready

    def get(self, handle):
        value = ray.get(handle)
        if handle in self._owner:
            self._load[self._owner.pop(handle)] -= 1
        return value

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
