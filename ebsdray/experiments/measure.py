"""Metrics of one sample set at every K of a sweep, from prefixes of the same samples.

    for k, section, res, samples in prefix_results(result, ks):  # reconstruct(keep_samples=True)
        metrics, curves = measure(res, section, result.codec, result.variant, samples)

Posterior sample k of section d draws from ``SeedSequence([seed, d, k])`` whatever else is drawn,
and the merge is seeded by the same seed, so the first k of K samples merged here are exactly what
``reconstruct`` with ``Budget(samples=k)`` and that seed returns (tests/experiments check it):
a sweep over K costs its largest K, not the sum.

Besides :func:`ebsdray.posterior.section_metrics` (the model's metrics and the baselines' under
``sobel_`` / ``nearest_`` / ``bilinear_``), :func:`measure` adds

- ``boundary_pixel_ratio``: predicted over true boundary pixels (about 2 when boundaries are
  duplicated, as the paper reports for full EBSD under misregistration);
- ``pl_route_*`` (multimodal samples): the boundaries of the paper's aggregation, Sobel on the
  samples' PL cut at the kneed elbow, beside the default one (EBSD evidence when EBSD is observed);
- uncertainty against error: ``ebsd_spread_spearman`` / ``ebsd_error_over_spread`` (the samples'
  disorientation spread against the error of the super-resolved map, at unobserved pixels) and
  ``pl_std_spearman`` / ``pl_error_over_std`` (the PL samples' std against the error of their
  mean), with binned sums for reliability curves (:data:`EBSD_EDGES_DEG`, :data:`PL_EDGES`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ebsdray.aggregate.baselines import sobel_baseline
from ebsdray.aggregate.boundaries import boundary_confidence, threshold_boundaries
from ebsdray.api import Reconstruction
from ebsdray.conventions import ChannelLayout
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.metrics import blurred_bce, chamfer, grain_boundaries
from ebsdray.observation import ObservedSection
from ebsdray.posterior import SectionResult, merge_section, section_metrics

# Bin edges of the predicted spread; fixed, so binned sums add up over sections, seeds, volumes.
EBSD_EDGES_DEG = np.array([0.0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 180])
PL_EDGES = np.array([0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 4.0])


def prefix_results(
    result: Reconstruction, ks: Sequence[int]
) -> Iterator[tuple[int, ObservedSection, SectionResult, np.ndarray]]:
    """``(k, observed section, merged result, its (k, C, H, W) samples)`` for every section and
    every k in ``ks``.

    Parameters
    ----------
    result : from ``reconstruct(..., keep_samples=True)`` with ``max(ks)`` samples per section.
    ks : K values; the largest uses the section's own result, the others merge its first k
        samples (seeded as ``reconstruct`` seeds the merge).
    """
    for s in result.sections:
        if s.samples is None:
            raise ValueError("prefix metrics need the raw samples: reconstruct(keep_samples=True)")
        section = result.observation.section(s.index, result.codec)
        n = s.samples.shape[0]
        for k in sorted(ks):
            if k > n:
                raise ValueError(f"K = {k} but section {s.index} has {n} samples")
            samples = s.samples[:k]
            if k == n:
                yield k, section, s, samples
                continue
            merged = merge_section(
                section, samples, result.codec, result.variant, seed=result.seed,
                grain_tolerance_deg=result.grain_tolerance_deg,
            )  # fmt: skip
            yield k, section, merged, samples


def binned(pred: np.ndarray, err: np.ndarray, edges: np.ndarray) -> dict[str, list[float]]:
    """Sums per bin of the predicted spread: ``count``, ``pred`` (sum of predictions), ``err``
    and ``err2`` (sums of the error and its square). pred, err : (N,) per pixel."""
    idx = np.clip(np.digitize(pred, edges) - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    return {
        "count": np.bincount(idx, minlength=nb).astype(float).tolist(),
        "pred": np.bincount(idx, pred, minlength=nb).tolist(),
        "err": np.bincount(idx, err, minlength=nb).tolist(),
        "err2": np.bincount(idx, err * err, minlength=nb).tolist(),
    }


def _spearman(pred: np.ndarray, err: np.ndarray) -> float:
    if pred.size < 3 or np.ptp(pred) == 0 or np.ptp(err) == 0:
        return float("nan")  # e.g. K = 1: no spread at all
    return float(stats.spearmanr(pred, err).statistic)


def _boundary_extras(
    res: SectionResult, samples: np.ndarray | None, layout: ChannelLayout, true_b: np.ndarray
) -> dict[str, float]:
    out: dict[str, float] = {}
    n_true = max(int(true_b.sum()), 1)
    if res.boundary is not None:
        out["boundary_pixel_ratio"] = float(res.boundary.sum()) / n_true
    if layout.has_ebsd and layout.has_pl and samples is not None:
        # the paper's route: the mean Sobel map of the samples' PL, cut at its kneed elbow
        p = boundary_confidence(np.asarray(samples)[:, layout.pl])
        b = threshold_boundaries(p)
        c = chamfer(b, true_b)
        out |= {
            "pl_route_chamfer": c["bidirectional"],
            "pl_route_chamfer_forward": c["forward"],
            "pl_route_chamfer_backward": c["backward"],
            "pl_route_blurred_bce": blurred_bce(p, true_b),
            "pl_route_boundary_pixel_ratio": float(b.sum()) / n_true,
        }
    return out


def _ebsd_reliability(
    res: SectionResult, section: ObservedSection
) -> tuple[dict[str, float], dict[str, Any]]:
    truth = section.truth
    observed = section.observation.mask[0].numpy() > 0
    scored = np.asarray(truth.valid[0], bool) & ~observed  # observed pixels are kept exactly
    if not scored.any() or "ebsd_spread_deg" not in res.uncertainty:
        return {}, {}
    err = disorientation_deg(
        res.ebsd_quaternions.astype(np.float64), truth.quaternions[0].astype(np.float64)
    )[scored]
    pred = np.asarray(res.uncertainty["ebsd_spread_deg"], np.float64)[scored]
    metrics = {
        "ebsd_spread_spearman": _spearman(pred, err),
        "ebsd_error_over_spread": float(err.mean() / pred.mean()) if pred.mean() > 0 else np.nan,
    }
    return metrics, binned(pred, err, EBSD_EDGES_DEG)


def _pl_reliability(
    res: SectionResult, section: ObservedSection, codec
) -> tuple[dict[str, float], dict[str, Any]]:
    if section.clean is None or res.pl_denoised is None or "pl_std" not in res.uncertainty:
        return {}, {}
    clean = section.clean[codec.layout().pl].numpy().astype(np.float64)
    err = np.sqrt(((res.pl_denoised.astype(np.float64) - clean) ** 2).mean(axis=0)).ravel()
    pred = np.asarray(res.uncertainty["pl_std"], np.float64).ravel()
    rms_pred = float(np.sqrt((pred**2).mean()))
    metrics = {
        "pl_std_spearman": _spearman(pred, err),
        "pl_error_over_std": float(np.sqrt((err**2).mean()) / rms_pred) if rms_pred else np.nan,
    }
    return metrics, binned(pred, err, PL_EDGES)


def measure(
    res: SectionResult,
    section: ObservedSection,
    codec,
    variant: str,
    samples: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of one merged section and its reliability sums.

    Parameters
    ----------
    res : the merged section (``merge_section`` of ``samples``).
    samples : (k, C, H, W) the samples ``res`` merges (for the ``pl_route_*`` boundaries).

    Returns
    -------
    metrics : flat ``{name: float}`` (see the module docstring).
    curves : ``{"ebsd": binned sums, "pl": binned sums}`` where the outputs exist.
    """
    metrics = section_metrics(res, section, codec)
    true_b = grain_boundaries(section.truth.grain_ids[0])
    metrics |= _boundary_extras(res, samples, codec.layout(variant), true_b)
    curves = {}
    if res.ebsd_quaternions is not None:
        m, curves["ebsd"] = _ebsd_reliability(res, section)
        metrics |= m
    if res.pl_denoised is not None:
        m, curves["pl"] = _pl_reliability(res, section, codec)
        metrics |= m
    return metrics, {k: v for k, v in curves.items() if v}


def baseline_metrics(section: ObservedSection, codec) -> dict[str, dict[str, float]]:
    """The baselines of one observed section under the model's metric names.

    Returns
    -------
    ``{"sobel": {...}, "nearest": {...}, "bilinear": {...}}`` (nearest and bilinear only with
    observed EBSD); Sobel's ``pl_psnr`` is the observed PL's (what Sobel works from).
    """
    nothing = SectionResult(section.index, None, None, None, None, {}, None, {})
    flat = section_metrics(nothing, section, codec)  # only the baselines, prefixed
    true_b = grain_boundaries(section.truth.grain_ids[0])
    sobel = sobel_baseline(section.observation.y[codec.layout().pl])
    flat["sobel_boundary_pixel_ratio"] = float(sobel["boundary"].sum()) / max(true_b.sum(), 1)
    if "observed_pl_psnr" in flat:
        flat["sobel_pl_psnr"] = flat.pop("observed_pl_psnr")
    out: dict[str, dict[str, float]] = {}
    for name in ("sobel", "nearest", "bilinear"):
        part = {k[len(name) + 1 :]: v for k, v in flat.items() if k.startswith(f"{name}_")}
        if part:
            out[name] = part
    return out
