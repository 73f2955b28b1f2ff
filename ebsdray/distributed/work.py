"""The two units of work of a volume reconstruction, as plain functions that any process runs.

``draw`` makes some posterior samples of one section (on a model replica); ``finish`` merges a
section's samples into its outputs, scores them and writes them (an aggregation task). Both take
and return plain Python objects, so the same code runs in-process and on Ray.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ebsdray.aggregate.boundaries import DEFAULT_THRESHOLD_DEG
from ebsdray.data.codec import ChannelCodec
from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.figures import section_figure
from ebsdray.io.reconstruction_store import ReconstructionStore
from ebsdray.observation import ObservedSection
from ebsdray.posterior import (
    SamplerSpec,
    convergence_sums,
    merge_section,
    sample_section,
    section_metrics,
)


def draw(
    model: DiffusionModel,
    section: ObservedSection,
    sampler: SamplerSpec,
    seed: int,
    indices: Sequence[int],
    precision: str = "auto",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Posterior samples ``indices`` of ``section`` drawn with ``sampler``: (k, C, H, W) float32
    and small facts (``sums`` for adaptive budgets, ``network_evaluations``, ``seconds``,
    ``ess_sum``)."""
    t0 = time.perf_counter()
    samples, info = sample_section(model, section, sampler, seed, indices, precision=precision)
    facts = {
        "count": len(indices),
        "precision": info["precision"],
        "network_evaluations": int(info.get("network_evaluations", 0)),
        "seconds": time.perf_counter() - t0,
        "sums": convergence_sums(samples, model.variant),
    }
    if "ess" in info:  # (steps, runs): one mean per run, summed over this request's runs
        facts["ess_sum"] = float(torch.as_tensor(info["ess"]).float().mean(0).sum())
    return samples.numpy(), facts


@dataclass(frozen=True)
class FinishSpec:
    """What ``finish`` does with a section's samples.

    Attributes
    ----------
    codec, variant : the model's channel codec and variant.
    seed : seeds the alignment MLP.
    keep_samples : keep the raw samples (in the result and the store).
    evaluate : score against the ground truth when the section has one.
    output_dir : write into this ReconstructionStore (None: return the result instead).
    figure : write the section's PNG beside the store.
    grain_tolerance_deg : the grain tolerance of the merge (:func:`ebsdray.aggregate.aggregate`).
    """

    codec: ChannelCodec
    variant: str
    seed: int = 0
    keep_samples: bool = False
    evaluate: bool = True
    output_dir: str | None = None
    figure: bool = True
    grain_tolerance_deg: float = DEFAULT_THRESHOLD_DEG


def finish(
    section: ObservedSection, info: dict[str, Any], spec: FinishSpec, *samples: np.ndarray
) -> dict[str, Any]:
    """Merge, score and (with ``spec.output_dir``) write one section.

    Parameters
    ----------
    section : the observed section.
    info : sampler facts for the record.
    samples : the section's sample blocks in sample-index order, each (k, C, H, W).

    Returns
    -------
    ``{"record": {"section", "info", "metrics"}, "result": SectionResult or None}``; the result
    is returned only when nothing is written (the driver then holds it).
    """
    t0 = time.perf_counter()
    merged = np.concatenate(samples)
    result = merge_section(
        section,
        merged,
        spec.codec,
        spec.variant,
        keep_samples=spec.keep_samples,
        info=info,
        seed=spec.seed,
        grain_tolerance_deg=spec.grain_tolerance_deg,
    )
    metrics = {}
    if spec.evaluate and section.truth is not None:
        metrics = section_metrics(result, section, spec.codec)
    result.info["aggregation_seconds"] = time.perf_counter() - t0
    record = {"section": section.index, "info": result.info, "metrics": metrics}
    if spec.output_dir is None:
        return {"record": record, "result": result}
    store = ReconstructionStore(spec.output_dir)
    if spec.figure:
        section_figure(result, section, spec.codec, store.section_file(section.index, ".png"))
    store.write_section(result, record)
    return {"record": record, "result": None}
