"""The public Python API: a sampler and budget, reconstruction of observed volumes, evaluation.

    import ebsdray
    model = ebsdray.load_model("multimodal")
    vol = ebsdray.synthetic_volume((4, 64, 64), seed=7)
    obs = ebsdray.observe(vol, ebsd_fraction=1 / 16, pattern="grid", pl_noise=0.05, seed=0)
    result = ebsdray.reconstruct(obs, model, budget=ebsdray.Budget(samples=8), seed=0)
    result.sections[0].boundary                  # (H, W) bool
    ebsdray.evaluate(result, vol)                # {"chamfer": ..., "sobel_chamfer": ..., ...}

    # the same on Ray (a running cluster, or a local one with 2 replicas), streamed to disk:
    result = ebsdray.reconstruct(obs, model, budget=..., seed=0,
                                 placement=ebsdray.Placement(cluster="auto"),
                                 output_dir="/data/run1")

Every posterior sample k of section d draws from ``SeedSequence([seed, d, k])``: results do not
depend on how sections and samples are split over processes or Ray replicas.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ebsdray.aggregate.boundaries import DEFAULT_THRESHOLD_DEG, check_grain_tolerance
from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.distributed.cluster import connect
from ebsdray.distributed.replicas import (
    RayBackend,
    ReplicaResources,
    default_replicas,
)
from ebsdray.distributed.runner import LocalBackend, run_sections
from ebsdray.distributed.work import FinishSpec
from ebsdray.io.reconstruction_store import ReconstructionStore
from ebsdray.io.volume_store import ebsdray_version
from ebsdray.observation import ObservedVolume
from ebsdray.posterior import (
    Budget,
    SamplerSpec,
    SectionResult,
    probe_sample_cost,
    section_metrics,
)

__all__ = [
    "Budget",
    "Placement",
    "Reconstruction",
    "ReplicaResources",
    "SamplerSpec",
    "SectionResult",
    "evaluate",
    "prepare_output",
    "reconstruct",
    "section_metrics",
]


@dataclass
class Reconstruction:
    """Results of :func:`reconstruct`: one :class:`SectionResult` per section, plus provenance.

    Attributes
    ----------
    sections : SectionResults in section order (read lazily from ``output_dir`` when the
        reconstruction was written there).
    records : per-section ``{"section", "info", "metrics"}`` in section order.
    output_dir : where the outputs were written, or None (in memory).
    grain_tolerance_deg : the grain tolerance the samples were merged with.
    """

    sections: Sequence[SectionResult]
    records: list[dict[str, Any]]
    observation: ObservedVolume
    model: str
    variant: str
    budget: Budget
    seed: int
    codec: Any
    output_dir: Path | None = None
    grain_tolerance_deg: float = DEFAULT_THRESHOLD_DEG

    def __len__(self) -> int:
        return len(self.sections)

    def stack(self, name: str) -> np.ndarray:
        """One output over all sections, e.g. ``stack("boundary")`` -> (D, H, W)."""
        return np.stack([getattr(s, name) for s in self.sections])


@dataclass(frozen=True)
class Placement:
    """Where :func:`reconstruct` runs and how it hands out work. None of it changes the outputs
    but ``resources.threads`` (fp32 convolutions round differently with other thread counts).

    ``Placement()`` runs in this process; ``Placement(cluster="auto")`` on the running Ray
    cluster, with as many replicas as it can place; ``Placement(replicas=2)`` on a local Ray
    cluster with 2 replicas.

    Attributes
    ----------
    cluster : ``"auto"`` (the running Ray cluster), an address, or ``"local"`` (the cluster of
        ``ray job submit``, else a new loopback-only one); None: this process, unless
        ``replicas`` is set (then ``"local"``).
    replicas : model replicas on Ray; None: as many as the cluster can place.
    resources : size of each replica and aggregation task (:class:`ReplicaResources`). In this
        process the network runs with ``resources.threads`` torch threads, as a replica does.
    samples_per_request : samples per replica request (default 1; does not change results).
    """

    cluster: str | None = None
    replicas: int | None = None
    resources: ReplicaResources = field(default_factory=ReplicaResources)
    samples_per_request: int | None = None

    def __post_init__(self) -> None:
        for name in ("replicas", "samples_per_request"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | np.integer) or value < 1):
                raise ValueError(f"Placement.{name} must be an integer >= 1 or None; got {value!r}")

    @property
    def on_ray(self) -> bool:
        return self.cluster is not None or self.replicas is not None


class StoredSections(Sequence[SectionResult]):
    """Finished sections of a :class:`ReconstructionStore`, read one at a time on access."""

    def __init__(self, store: ReconstructionStore, indices: Sequence[int]) -> None:
        self.store = store
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return SectionResult(**self.store.section(self.indices[i]))


def _sections(observation: ObservedVolume, sections: Sequence[int] | None) -> list[int]:
    if sections is None:
        return list(range(len(observation)))
    bad = [s for s in sections if not 0 <= int(s) < len(observation)]
    if bad:
        raise ValueError(f"sections {bad} out of range for a volume of {len(observation)} sections")
    return [int(s) for s in sections]


def check_inputs(
    observation: ObservedVolume, model: DiffusionModel, sections: Sequence[int]
) -> None:
    """Refuse, before any compute, an observation the model cannot reconstruct: sections smaller
    than the model window, nothing to condition on, non-finite orientations at indexed pixels
    (every section is read once; cheap next to sampling)."""
    _, h, w = observation.shape
    if min(h, w) < model.window:
        raise ValueError(
            f"sections of {h} x {w} pixels are smaller than the model's {model.window}-pixel "
            "window; crop or pad the volume to at least the window, or use a model trained on "
            "smaller windows"
        )
    if not model.codec.layout(model.variant).has_pl and observation.spec.pattern == "none":
        raise ValueError("the EBSD-only model has nothing to condition on with pattern='none'")
    for i in sections:
        truth = observation.truth.section(i)
        q = np.asarray(truth.quaternions[0])[truth.valid[0]]
        bad = int((~np.isfinite(q).all(axis=-1)).sum())
        if bad:
            raise ValueError(
                f"section {i} has {bad} indexed pixels with NaN or inf orientations; mark them "
                "unindexed (grain id 0, valid False) or repair the volume"
            )
    if sections:
        observation.section(sections[0], model.codec).observation.for_variant(model.variant)


def prepare_output(
    output_dir: str | os.PathLike[str],
    observation: ObservedVolume,
    model: DiffusionModel,
    budget: Budget,
    *,
    seed: int = 0,
    sections: Sequence[int] | None = None,
    precision: str = "auto",
    keep_samples: bool = False,
    grain_tolerance_deg: float = DEFAULT_THRESHOLD_DEG,
    identity: dict[str, Any] | None = None,
    store_attrs: dict[str, Any] | None = None,
) -> ReconstructionStore:
    """Check the inputs, then create the output store of a reconstruction, or reopen it to
    resume the same job.

    Cheap and idempotent: call it before spending compute (e.g. before opening a tracking run)
    to fail fast on bad inputs or on an ``output_dir`` that holds other files or another job's
    results (``FileExistsError`` naming the differences), then pass the store to
    :func:`reconstruct` as its ``output_dir`` (with the same job arguments: it checks them).

    Parameters
    ----------
    output_dir : where the store goes (``reconstruction.zarr`` and ``sections/``).
    observation, model, budget, seed, sections, precision, keep_samples, grain_tolerance_deg :
        the job, as in :func:`reconstruct`.
    identity : extra facts that define the job for resume checks (e.g. the volume's source).
    store_attrs : extra attributes for the store (e.g. the resolved job config).
    """
    check_inputs(observation, model, _sections(observation, sections))
    tolerance = check_grain_tolerance(grain_tolerance_deg)
    facts = _job_facts(observation, model, budget, seed, precision, keep_samples, tolerance)
    return ReconstructionStore.create(
        output_dir,
        identity=facts | (identity or {}),
        shape=observation.shape,
        variant=model.variant,
        pl_channels=model.codec.pl_channels,
        max_samples=max(budget.max_samples_for(i) for i in range(len(observation))),
        keep_samples=keep_samples,
        attrs={"ebsdray_version": ebsdray_version(), **(store_attrs or {})},
    )


def _job_facts(
    observation: ObservedVolume,
    model: DiffusionModel,
    budget: Budget,
    seed: int,
    precision: str,
    keep_samples: bool,
    grain_tolerance_deg: float,
) -> dict[str, Any]:
    """What defines a job's results, as its store records them (the resume check)."""
    return {
        "model": model.source,
        "model_provenance": model.provenance,
        "variant": model.variant,
        "observation": observation.spec.to_dict(),
        "volume_shape": list(observation.shape),
        "budget": budget.to_dict(),
        "seed": int(seed),
        "precision": str(precision),
        "keep_samples": bool(keep_samples),
        "grain_tolerance_deg": float(grain_tolerance_deg),
    }


def _announce(
    model: DiffusionModel,
    observation: ObservedVolume,
    budget: Budget,
    todo: Sequence[int],
    precision: str,
    replicas: int,
    threads: int,
) -> None:
    """Say up front what the job will cost: network evaluations and time, from a short probe
    of the network in this process (with a replica's thread count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cost = probe_sample_cost(model, observation.section(todo[0], model.codec),
                                 budget.sampler, precision=precision)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    samples = sum(budget.max_samples_for(i) for i in todo)
    seconds = samples * cost["seconds_per_sample"] / max(replicas, 1)
    bound = "at most " if budget.adaptive else ""
    tqdm.write(
        f"ebsdray: {len(todo)} sections, {bound}{samples} posterior samples, "
        f"{bound}{samples * cost['network_evaluations']:,} network evaluations "
        f"({cost['steps']} steps x {cost['particles']} particle(s) x {cost['tiles']} tile(s) "
        "per sample); "
        f"sampling: {bound}{_duration(seconds)} estimated on {replicas} replica(s), before "
        "start-up and merging "
        f"(probe: {cost['seconds_per_sample']:.1f} s per sample, {cost['precision']}, "
        f"{threads} thread(s))"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def reconstruct(
    observation: ObservedVolume,
    model: DiffusionModel,
    budget: Budget | None = None,
    *,
    seed: int = 0,
    sections: Sequence[int] | None = None,
    keep_samples: bool = False,
    precision: str = "auto",
    grain_tolerance_deg: float = DEFAULT_THRESHOLD_DEG,
    placement: Placement | None = None,
    output_dir: str | os.PathLike[str] | ReconstructionStore | None = None,
    figures: bool = True,
    evaluate: bool = True,
    progress: bool = True,
    on_section: Callable[[dict[str, Any]], None] | None = None,
) -> Reconstruction:
    """Reconstruct every (or the given) section of an observed volume.

    In this process by default; on Ray with a ``placement`` that names a cluster or a replica
    count. The same seed gives the same outputs either way, with any number of replicas.

    Parameters
    ----------
    observation : from :func:`ebsdray.observe`.
    model : from :func:`ebsdray.load_model` (multimodal, EBSD-only or PL-only).
    budget : samples per section (fixed, per section or adaptive) and the sampler that draws
        them (default ``Budget()``: K = 8 with the guided sampler, N = 30 steps).
    seed : base seed of the posterior samples.
    sections : subset of section indices (default all).
    keep_samples : keep the raw K samples in each result (and in the store).
    precision : ``"auto"`` (bf16 where the replica's device runs it natively, else fp32),
        ``"fp32"`` or ``"bf16"``; of the network only (:mod:`ebsdray.precision`). The one
        used is in each section's ``info["precision"]``.
    grain_tolerance_deg : the grain tolerance angle of the merge: neighbouring observations,
        and grains, that differ by more than this are different grains (5 degrees, the field's
        usual value; 2 finds low-angle boundaries, but only in EBSD whose own noise is well below
        it). See :func:`ebsdray.aggregate.aggregate`.
    placement : where to run and how to hand out work (:class:`Placement`; default this
        process, with 1 torch thread as a replica has).
    output_dir : stream each section's outputs into a zarr store there (see
        :mod:`ebsdray.io.reconstruction_store`), with a figure per section; sections already
        finished by the same job are skipped (resume). The result then reads sections lazily.
        A store from :func:`prepare_output` is used as is, once it is seen to hold this job
        (that is also how to give the store extra ``identity`` or ``store_attrs``).
    figures : write a PNG per section into ``output_dir``.
    evaluate : score each section against its ground truth, when it has one (``records``).
    progress : a progress bar, and a line up front saying what the job will cost.
    on_section : called with each finished section's record ``{"section", "info", "metrics"}``.

    Returns
    -------
    Reconstruction with one SectionResult per section.
    """
    budget = budget or Budget()
    indices = _sections(observation, sections)
    tolerance = check_grain_tolerance(grain_tolerance_deg)
    job = _Job(observation, model, budget, seed, indices, precision, keep_samples, tolerance)
    store = _checked_store(job, output_dir)
    records, todo = _resumed(store, indices)
    spec = _finish_spec(job, store, evaluate, figures)
    owns_store = store is not None and not isinstance(output_dir, ReconstructionStore)
    try:
        done = _run(job, todo, spec, placement or Placement(), on_section, progress)
        records |= {i: out["record"] for i, out in done.items()}
        ordered = [records[i] for i in indices]
        if store is not None:
            store.finalize()
    finally:  # a store this call opened gives its directory up however the call ends
        if owns_store:
            store.release()
    return _collected(job, store, done, ordered)


@dataclass(frozen=True)
class _Job:
    """What one :func:`reconstruct` call reconstructs, and how: what its steps share."""

    observation: ObservedVolume
    model: DiffusionModel
    budget: Budget
    seed: int
    indices: list[int]  # the sections asked for, in order
    precision: str
    keep_samples: bool
    grain_tolerance_deg: float

    def facts(self) -> dict[str, Any]:
        o, m, b = self.observation, self.model, self.budget
        return _job_facts(
            o, m, b, self.seed, self.precision, self.keep_samples, self.grain_tolerance_deg
        )


def _checked_store(
    job: _Job, output_dir: str | os.PathLike[str] | ReconstructionStore | None
) -> ReconstructionStore | None:
    """Check the inputs and open the output store: a store given as ``output_dir`` as is (once
    it is seen to be this job's), a new or reopened one at a path, or None (the outputs stay in
    memory)."""
    if isinstance(output_dir, ReconstructionStore):  # from prepare_output: inputs checked
        diff = output_dir.identity_differences(job.facts())
        if diff:
            raise ValueError(
                f"the store in {output_dir.output_dir} was prepared for another job (it differs "
                f"in {'; '.join(diff)}); call prepare_output with this job's arguments"
            )
        return output_dir
    if output_dir is None:
        check_inputs(job.observation, job.model, job.indices)
        return None
    return prepare_output(
        output_dir,
        job.observation,
        job.model,
        job.budget,
        seed=job.seed,
        sections=job.indices,
        precision=job.precision,
        keep_samples=job.keep_samples,
        grain_tolerance_deg=job.grain_tolerance_deg,
    )


def _resumed(
    store: ReconstructionStore | None, indices: Sequence[int]
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The records of the sections the store has finished already, and the sections to do."""
    if store is None:
        return {}, list(indices)
    finished = set(store.completed())
    records = {i: store.record(i) for i in indices if i in finished}
    return records, [i for i in indices if i not in finished]


def _finish_spec(
    job: _Job, store: ReconstructionStore | None, evaluate: bool, figures: bool
) -> FinishSpec:
    """What ``finish`` does with each section's samples: write them into the store if any."""
    return FinishSpec(
        codec=job.model.codec,
        variant=job.model.variant,
        seed=job.seed,
        keep_samples=job.keep_samples,
        evaluate=evaluate,
        output_dir=None if store is None else str(store.output_dir),
        figure=figures,
        grain_tolerance_deg=job.grain_tolerance_deg,
    )


def _backend(
    model: DiffusionModel, todo: Sequence[int], placement: Placement
) -> LocalBackend | RayBackend:
    """Ray replicas when the placement asks for Ray and there is work left (a finished job
    starts nothing); this process otherwise."""
    resources = placement.resources
    if todo and placement.on_ray:
        connect(placement.cluster)
        return RayBackend(model, placement.replicas or default_replicas(resources), resources)
    return LocalBackend(model, threads=resources.threads)


def _run(
    job: _Job,
    todo: list[int],
    spec: FinishSpec,
    placement: Placement,
    on_section: Callable[[dict[str, Any]], None] | None,
    progress: bool,
) -> dict[int, dict[str, Any]]:
    """Reconstruct the sections ``todo`` on the backend chosen, saying up front what it will
    cost when ``progress``; returns ``{section: finish output}``."""
    backend = _backend(job.model, todo, placement)
    if progress and todo:
        _announce(
            job.model,
            job.observation,
            job.budget,
            todo,
            job.precision,
            backend.replicas,
            placement.resources.threads,
        )
    try:
        return run_sections(
            backend,
            job.observation,
            job.model,
            job.budget,
            spec,
            seed=job.seed,
            sections=todo,
            precision=job.precision,
            samples_per_request=placement.samples_per_request,
            on_section=on_section,
            progress=progress,
        )
    finally:  # Ray replicas are actors of this job: end them however the run ends
        if isinstance(backend, RayBackend):
            backend.close()


def _collected(
    job: _Job,
    store: ReconstructionStore | None,
    done: dict[int, dict[str, Any]],
    records: list[dict[str, Any]],
) -> Reconstruction:
    """The reconstruction returned: sections read lazily from the store, else those in memory."""
    if store is not None:
        results: Sequence[SectionResult] = StoredSections(store, job.indices)
    else:
        results = [done[i]["result"] for i in job.indices]
    return Reconstruction(
        sections=results,
        records=records,
        observation=job.observation,
        model=job.model.source,
        variant=job.model.variant,
        budget=job.budget,
        seed=job.seed,
        codec=job.model.codec,
        output_dir=None if store is None else store.output_dir,
        grain_tolerance_deg=job.grain_tolerance_deg,
    )


def evaluate(
    result: Reconstruction, volume: Any = None, *, prefix: str = "", per_section: bool = False
) -> dict[str, float] | list[dict[str, float]]:
    """Metrics of a reconstruction against the ground truth (:mod:`ebsdray.metrics`).

    Parameters
    ----------
    result : from :func:`reconstruct`.
    volume : the ground truth; default: the one the observation was simulated from. Given
        explicitly, it must have the observation's shape.
    prefix : prepended to the model's metric names (e.g. ``"pl_model_"`` for a PL-only
        reconstruction compared in one table); baselines are computed only without a prefix.
    per_section : return one dict per section instead of the mean over sections.

    Returns
    -------
    Flat dict: ``chamfer``, ``chamfer_forward``, ``chamfer_backward``, ``blurred_bce``,
    ``disorientation_mean_deg``, ``disorientation_boundary_deg``, ``pl_psnr`` (what the model
    produces), the same names prefixed ``sobel_``, ``nearest_``, ``bilinear_`` for the baselines,
    and ``observed_pl_psnr``.
    """
    observation = result.observation
    if volume is not None:
        if tuple(volume.shape) != tuple(observation.shape):
            raise ValueError(
                f"volume shape {volume.shape} differs from the observation's {observation.shape}"
            )
        observation = ObservedVolume(volume, observation.spec)
    rows = []
    for s in result.sections:
        section = observation.section(s.index, result.codec)
        rows.append(section_metrics(s, section, result.codec, prefix))
    if per_section:
        return rows
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
