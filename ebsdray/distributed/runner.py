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
reached. The budget stays in the driver: each draw request carries only ``budget.sampler``
(a :class:`~ebsdray.posterior.SamplerSpec`). Sample ``k`` of section ``i`` always comes from the
same seed, so neither the backend, the number of replicas nor the request size changes any
output.
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
from ebsdray.posterior import Budget, SamplerSpec, aggregate_change


class Backend(Protocol):
    """Where units of work run. Handles are opaque (values locally, ObjectRefs on Ray)."""

    replicas: int

    def put(self, obj: Any) -> Any: ...
    def draw(
        self, section: Any, sampler: SamplerSpec, seed: int, indices: Sequence[int], precision: str
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

    def draw(self, section, sampler, seed, indices, precision):
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            samples, facts = draw(self.model, section, sampler, seed, indices, precision)
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

    def add(self, facts: dict[str, Any]) -> None:
        """Fold in the facts of one returned draw request: its ``sums``, costs and precision."""
        self.pending -= 1
        self.sums = facts["sums"] if self.sums is None else self.sums + facts["sums"]
        for key in self.facts:
            self.facts[key] += facts.get(key, 0)
        self.precisions.add(facts["precision"])

    def end_round(self, variant: str, tolerance: float) -> bool:
        """Count the round just returned; True when its running mean moved by at most
        ``tolerance`` from the previous round's (never after the first round)."""
        self.rounds += 1
        mean = self.sums / self.target
        if self.previous_mean is not None:
            self.changes.append(aggregate_change(self.previous_mean, mean, variant))
        self.previous_mean = mean
        return bool(self.changes) and self.changes[-1] <= tolerance

    def info(self, adaptive: bool) -> dict[str, Any]:
        """What ``finish`` records of the sampling: counts, cost, precision, convergence."""
        info = {
            "samples": self.target,
            "rounds": self.rounds,
            "network_evaluations": int(self.facts["network_evaluations"]),
            "sampling_seconds": float(self.facts["seconds"]),
            "precision": "+".join(sorted(self.precisions)),
        }
        if self.facts["ess_sum"]:
            info["mean_ess"] = self.facts["ess_sum"] / self.target
        if adaptive:  # how the aggregate settled, round by round
            info["changes"] = self.changes
            info["last_change"] = self.changes[-1] if self.changes else float("nan")
        return info


@dataclass
class _Run:
    """The state of one :func:`run_sections` call: its settings, the sections still queued and
    those open, the draw requests and finish tasks in flight, and the finished outputs."""

    backend: Backend
    observation: ObservedVolume
    model: DiffusionModel
    budget: Budget
    spec: FinishSpec
    seed: int
    precision: str
    samples_per_request: int | None
    max_in_flight: int
    max_open: int
    on_section: Callable[[dict[str, Any]], None] | None
    queue: deque[int]
    bar: tqdm
    n_sections: int
    open_: dict[int, _Section] = field(default_factory=dict)
    requests: dict[Any, _Section] = field(default_factory=dict)  # facts handle -> its section
    finishing: dict[Any, int] = field(default_factory=dict)  # finish handle -> section index
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    sections_done: int = 0

    def until_done(self) -> None:
        """Keep ``max_in_flight`` draw requests out and take back whatever returns, until every
        section is finished."""
        while self.queue or self.open_ or self.requests or self.finishing:
            self.submit()
            # finished sections first: their records reach on_section as early as possible
            for handle in self.backend.wait(list(self.finishing) + list(self.requests)):
                if handle in self.finishing:
                    self.section_finished(handle)
                else:
                    self.request_returned(handle)

    def submit(self) -> None:
        """Send draw requests for the next samples wanted until ``max_in_flight`` are out."""
        while len(self.requests) < self.max_in_flight:
            s = self.next_section()
            if s is None:
                return
            n = max(1, min(int(self.samples_per_request or 1), s.target - s.submitted))
            indices = list(range(s.submitted, s.submitted + n))
            samples, facts = self.backend.draw(
                s.handle, self.budget.sampler, self.seed, indices, self.precision
            )
            s.blocks[s.submitted] = samples
            self.requests[facts] = s
            s.submitted += n
            s.pending += 1

    def next_section(self) -> _Section | None:
        """An open section that wants more samples, else a newly opened one if ``max_open``
        allows, else None."""
        for s in self.open_.values():
            if s.submitted < s.target:
                return s
        if self.queue and len(self.open_) < self.max_open:
            i = self.queue.popleft()
            k = self.budget.samples_for(i)
            s = _Section(
                i,
                self.backend.put(self.observation.section(i, self.model.codec)),
                round_size=k,
                cap=self.budget.max_samples_for(i),
                target=k,
            )
            self.open_[i] = s
            return s
        return None

    def request_returned(self, handle: Any) -> None:
        """Take in a returned draw request; the last one of a round ends the round."""
        s = self.requests.pop(handle)
        facts = self.backend.get(handle)
        s.add(facts)
        self.bar.update(facts["count"])
        if s.pending == 0 and s.submitted == s.target:
            self.round_finished(s)

    def round_finished(self, s: _Section) -> None:
        """Add a round to an adaptive budget's section that has not settled (up to its cap);
        otherwise send the section's samples to ``finish`` and close it."""
        converged = s.end_round(self.model.variant, self.budget.tolerance)
        if self.budget.adaptive and not converged and s.target < s.cap:
            more = min(s.cap, s.target + s.round_size) - s.target
            s.target += more
            self.bar.total += more
            self.bar.refresh()
            return
        info = s.info(self.budget.adaptive)
        blocks = [s.blocks[k] for k in sorted(s.blocks)]
        self.finishing[self.backend.finish(s.handle, info, self.spec, blocks)] = s.index
        del self.open_[s.index]

    def section_finished(self, handle: Any) -> None:
        """Keep a finished section's output, count it on the bar and pass on its record."""
        index = self.finishing.pop(handle)
        out = self.backend.get(handle)
        self.done[index] = out
        self.sections_done += 1
        self.bar.set_postfix(sections=f"{self.sections_done}/{self.n_sections}")
        if self.on_section is not None:
            self.on_section(out["record"])


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
    # the bar counts posterior samples (it moves every sample, not every section); adaptive
    # rounds raise its total as they are added
    total = sum(budget.samples_for(i) for i in queue)
    bar = tqdm(total=total, desc="samples", unit="sample", disable=not progress, smoothing=0.1)
    run = _Run(
        backend,
        observation,
        model,
        budget,
        spec,
        seed=seed,
        precision=precision,
        samples_per_request=samples_per_request,
        max_in_flight=max_in_flight or 2 * replicas,
        max_open=max_open or replicas + 1,
        on_section=on_section,
        queue=queue,
        bar=bar,
        n_sections=len(queue),
    )
    run.until_done()
    bar.close()
    return run.done
