"""The volume runner: schedules ``draw`` requests and ``finish`` tasks over a backend.

One loop serves both backends. :class:`LocalBackend` runs each unit of work at once in this
process; :class:`~ebsdray.distributed.replicas.RayBackend` sends ``draw`` to model replicas
(actors) and ``finish`` to aggregation tasks, and the loop then holds only object references:
at most ``max_in_flight`` draw requests and ``max_open`` sections at a time, whatever the
volume's size.

Budgets: a section asks for ``budget.samples_for(i)`` samples in requests of
``samples_per_request``; with an adaptive budget, each finished round updates the running means
of the boundary confidence and EBSD channels (from the requests' small ``sums``) and another
round follows while they still move by more than ``budget.tolerance`` and ``max_samples`` is not
reached. Sample ``k`` of section ``i`` always comes from the same seed, so neither the backend,
the number of replicas nor the request size changes any output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.distributed.work import FinishSpec, draw, finish
from ebsdray.observation import ObservedVolume
from ebsdray.posterior import Budget, aggregate_change


class Backend(Protocol):
    """Where units of work run. Handles are opaque (values locally, ObjectRefs on Ray)."""

    replicas: int

    def put(self, obj: Any) -> Any: ...
    def draw(
        self, section: Any, budget: Budget, seed: int, indices: Sequence[int], precision: str
    ) -> tuple[Any, Any]: ...
    def finish(self, section: Any, info: dict, spec: FinishSpec, samples: list) -> Any: ...
    def wait(self, handles: Sequence[Any]) -> list[Any]: ...
    def get(self, handle: Any) -> Any: ...


class _Done:
    """A finished local unit of work (hashable by identity, like an ObjectRef)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class LocalBackend:
    """Runs everything in this process, one unit at a time, with ``threads`` torch threads per
    network evaluation, as a replica does: oneDNN's fp32 convolutions round differently with
    different thread counts (about 3e-6 between 1 and 2 threads), so the thread count, not the
    backend, is what the bits depend on."""

    replicas = 1

    def __init__(self, model: DiffusionModel, threads: int = 1) -> None:
        self.model = model
        self.threads = threads

    def put(self, obj: Any) -> Any:
        return obj

    def draw(self, section, budget, seed, indices, precision):
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            samples, facts = draw(self.model, section, budget, seed, indices, precision)
        finally:
            torch.set_num_threads(previous)
        return _Done(samples), _Done(facts)

    def finish(self, section, info, spec, samples):
        return _Done(finish(section, info, spec, *[s.value for s in samples]))

    def wait(self, handles):
        return list(handles[:1])

    def get(self, handle):
        return handle.value


@dataclass
class _Section:
    """Book-keeping of one open section in the driver (references and small sums only)."""

    index: int
    handle: Any  # the observed section (value or ObjectRef)
    round_size: int
    cap: int
    target: int  # samples wanted by the end of the current round
    submitted: int = 0
    pending: int = 0
    blocks: dict[int, Any] = field(default_factory=dict)  # first sample index -> samples
    sums: np.ndarray | None = None
    previous_mean: np.ndarray | None = None
    rounds: int = 0
    changes: list[float] = field(default_factory=list)
    facts: dict[str, float] = field(
        default_factory=lambda: {"network_evaluations": 0, "seconds": 0.0, "ess_sum": 0.0}
    )
    precisions: set[str] = field(default_factory=set)


def run_sections(
    backend: Backend,
    observation: ObservedVolume,
    model: DiffusionModel,
    budget: Budget,
    spec: FinishSpec,
    *,
    seed: int,
    sections: Iterable[int],
    precision: str = "auto",
    samples_per_request: int | None = None,
    max_in_flight: int | None = None,
    max_open: int | None = None,
    on_section: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """Reconstruct ``sections`` and return ``{section: finish output}`` as they complete.

    Parameters
    ----------
    samples_per_request : samples per draw request (default 1: each sample is its own network
        calls anyway, so bigger requests save nothing and would make the progress bar jumpy).
    max_in_flight : draw requests outstanding at once (default 2 per replica).
    max_open : sections with samples held at once (default replicas + 1).
    on_section : called in the driver with each finished section's record, in completion order
        (e.g. to log metrics to MLflow).
    """
    queue = deque(sections)
    replicas = max(1, int(backend.replicas))
    max_in_flight = max_in_flight or 2 * replicas
    max_open = max_open or replicas + 1
    open_: dict[int, _Section] = {}
    requests: dict[Any, _Section] = {}  # facts handle -> its section
    finishing: dict[Any, int] = {}
    done: dict[int, dict[str, Any]] = {}
    # the bar counts posterior samples (it moves every sample, not every section); adaptive
    # rounds raise its total as they are added
    total = sum(budget.samples_for(i) for i in queue)
    bar = tqdm(total=total, desc="samples", unit="sample", disable=not progress, smoothing=0.1)
    sections_done, n_sections = 0, len(queue)

    def request_size(s: _Section) -> int:
        per = samples_per_request or 1
        return max(1, min(int(per), s.target - s.submitted))

    def next_section() -> _Section | None:
        for s in open_.values():
            if s.submitted < s.target:
                return s
        if queue and len(open_) < max_open:
            i = queue.popleft()
            k = budget.samples_for(i)
            s = _Section(
                i,
                backend.put(observation.section(i, model.codec)),
                round_size=k,
                cap=budget.max_samples_for(i),
                target=k,
            )
            open_[i] = s
            return s
        return None

    def round_finished(s: _Section) -> None:
        s.rounds += 1
        mean = s.sums / s.target
        if s.previous_mean is not None:
            s.changes.append(aggregate_change(s.previous_mean, mean, model.variant))
        s.previous_mean = mean
        converged = bool(s.changes) and s.changes[-1] <= budget.tolerance
        if budget.adaptive and not converged and s.target < s.cap:
            more = min(s.cap, s.target + s.round_size) - s.target
            s.target += more
            bar.total += more
            bar.refresh()
            return
        info = {
            "samples": s.target,
            "rounds": s.rounds,
            "network_evaluations": int(s.facts["network_evaluations"]),
            "sampling_seconds": float(s.facts["seconds"]),
            "precision": "+".join(sorted(s.precisions)),
        }
        if s.facts["ess_sum"]:
            info["mean_ess"] = s.facts["ess_sum"] / s.target
        if budget.adaptive:  # how the aggregate settled, round by round
            info["changes"] = s.changes
            info["last_change"] = s.changes[-1] if s.changes else float("nan")
        blocks = [s.blocks[k] for k in sorted(s.blocks)]
        finishing[backend.finish(s.handle, info, spec, blocks)] = s.index
        del open_[s.index]

    while queue or open_ or requests or finishing:
        while len(requests) < max_in_flight:
            s = next_section()
            if s is None:
                break
            n = request_size(s)
            indices = list(range(s.submitted, s.submitted + n))
            samples, facts = backend.draw(s.handle, budget, seed, indices, precision)
            s.blocks[s.submitted] = samples
            requests[facts] = s
            s.submitted += n
            s.pending += 1
        # finished sections first: their records reach on_section as early as possible
        for handle in backend.wait(list(finishing) + list(requests)):
            if handle in finishing:
                index = finishing.pop(handle)
                out = backend.get(handle)
                done[index] = out
                sections_done += 1
                bar.set_postfix(sections=f"{sections_done}/{n_sections}")
                if on_section is not None:
                    on_section(out["record"])
                continue
            s = requests.pop(handle)
            facts = backend.get(handle)
            s.pending -= 1
            s.sums = facts["sums"] if s.sums is None else s.sums + facts["sums"]
            for key in s.facts:
                s.facts[key] += facts.get(key, 0)
            s.precisions.add(facts["precision"])
            bar.update(facts["count"])
            if s.pending == 0 and s.submitted == s.target:
                round_finished(s)
    bar.close()
    return done
