"""The paper's claims, tested on one test set of a sweep: a verdict per claim, with the numbers.

    verdicts = claim_verdicts(df, kmax)     # df: results rows of one test set

Every comparison is paired over units (volume, section, seed) with a 95% t interval of the mean
log ratio, or of the mean difference where a value is 0 (:mod:`ebsdray.experiments.stats`). Verdicts: ``holds`` (significant in the claimed
direction), ``does not hold`` (significant the other way, or never in the claimed direction),
``not significant``, ``partly`` (some comparisons hold, some do not), ``no data`` (not in this
sweep's size). With a single unit there is no interval: the verdict is the direction of the one
difference, marked ``(n = 1, untested)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebsdray.experiments.plan import PLAIN_PL
from ebsdray.experiments.stats import Paired, fraction_label, paired
from ebsdray.experiments.views import EBSD_GRID, MM_GRID, MM_PL_ROUTE, PL_MODEL, SOBEL, values

HOLDS, FAILS, NS, PARTLY, NO_DATA = (
    "holds",
    "does not hold",
    "not significant",
    "partly",
    "no data",
)
UNTESTED = " (n = 1, untested)"
CLOSE_SHARE = 0.9  # "1/4 is close to full": it keeps >= 90% of full EBSD's gain over none
SLIGHTLY = 1.5  # "slightly worse": at most 1.5x
DUPLICATE_RATIO = 1.25  # duplicated boundaries would double predicted / true boundary pixels


@dataclass(frozen=True)
class Verdict:
    claim: str
    numbers: str
    verdict: str


def outcome(p: Paired, claimed_sign: int = -1) -> str:
    """The verdict of one comparison whose claimed direction is ``claimed_sign`` (-1: a lower)."""
    if p.n == 0:
        return NO_DATA
    if p.n == 1 and p.diff != 0:  # no interval: the direction only
        return (HOLDS if math.copysign(1, p.diff) == claimed_sign else FAILS) + UNTESTED
    if p.sign == 0:
        return NS
    return HOLDS if p.sign == claimed_sign else FAILS


def combine(outcomes: list[str]) -> str:
    """One verdict from several comparisons (entries without data are left out)."""
    seen = [o for o in outcomes if o != NO_DATA]
    if not seen:
        return NO_DATA
    mark = UNTESTED if any(o.endswith(UNTESTED) for o in seen) else ""
    seen = [o.removesuffix(UNTESTED) for o in seen]
    if all(o == HOLDS for o in seen):
        return HOLDS + mark
    if HOLDS in seen:
        return PARTLY + mark
    return (FAILS if FAILS in seen else NS) + mark


def _fractions(df: pd.DataFrame) -> list[float]:
    return sorted({float(f) for f in df["fraction"]}) if "fraction" in df else []


def beats_sobel(df: pd.DataFrame, kmax: int) -> Verdict:
    """Diffusion (PL model; multimodal without and with EBSD) against Sobel, corrupted PL."""
    settings = sorted({p for p in df.get("pl", []) if p != PLAIN_PL})
    parts, outcomes = [], []
    for pl in settings:
        sobel0 = values(df, SOBEL, 0.0, "chamfer", 0, pl)
        for method, f in ((PL_MODEL, 0.0), (MM_GRID, 0.0), (MM_GRID, 1 / 16)):
            b = sobel0 if f == 0 else values(df, SOBEL, f, "chamfer", 0, pl)
            p = paired(values(df, method, f, "chamfer", kmax, pl), b)
            if p.n:
                o = outcome(p)
                outcomes.append(o)
                parts.append(f"{pl}, {method.model} at EBSD {fraction_label(f)}: {p.text()} {o}")
    return Verdict(
        "Diffusion beats Sobel on corrupted PL (Chamfer, model vs Sobel)",
        "; ".join(parts) or "-",
        combine(outcomes),
    )


def _num(m: float) -> str:
    return "0" if abs(m) < 5e-4 else f"{m:.3g}"


def _chain(df: pd.DataFrame, metric: str, fractions: list[float], kmax: int) -> tuple[str, str]:
    means = [values(df, MM_GRID, f, metric, kmax).mean() for f in fractions]
    steps = [
        outcome(paired(values(df, MM_GRID, b, metric, kmax), values(df, MM_GRID, a, metric, kmax)))
        for a, b in itertools.pairwise(fractions)
    ]
    ends = paired(
        values(df, MM_GRID, fractions[-1], metric, kmax),
        values(df, MM_GRID, fractions[0], metric, kmax),
    )
    text = " → ".join(
        f"{fraction_label(f)}: {_num(m)}" for f, m in zip(fractions, means, strict=True)
    )
    text += (
        f" ({fraction_label(fractions[-1])} vs {fraction_label(fractions[0])}: "
        f"{ends.text()}; steps: {', '.join(steps)})"
    )
    end = outcome(ends)
    mark = UNTESTED if end.endswith(UNTESTED) else ""
    end = end.removesuffix(UNTESTED)
    if end != HOLDS:
        return text, (FAILS if end == FAILS else NS) + mark
    worse = FAILS in [step.removesuffix(UNTESTED) for step in steps]
    return text, (PARTLY if worse else HOLDS) + mark


def more_ebsd(df: pd.DataFrame, kmax: int) -> Verdict:
    """The multimodal model (grid, plain PL) gets better with every step of EBSD fraction."""
    fractions = _fractions(df[df["model"] == "multimodal"]) if len(df) else []
    if len(fractions) < 2:
        return Verdict("More EBSD helps", "-", NO_DATA)
    c_text, c = _chain(df, "chamfer", fractions, kmax)
    b_text, b = _chain(df, "blurred_bce", fractions, kmax)
    positive = [f for f in fractions if f > 0]
    parts, outcomes = [f"Chamfer {c_text}", f"blurred BCE {b_text}"], [c, b]
    if len(positive) >= 2:
        d_text, d = _chain(df, "disorientation_mean_deg", positive, kmax)
        parts.append(f"disorientation (deg) {d_text}")
        outcomes.append(d)
    means = [values(df, MM_PL_ROUTE, f, "blurred_bce", kmax).mean() for f in fractions]
    if any(np.isfinite(means)):  # context: the paper's confidence map of the same samples
        chain = " → ".join(
            f"{fraction_label(f)}: {_num(m)}" for f, m in zip(fractions, means, strict=True)
        )
        parts.append(f"(context, not counted: blurred BCE of the PL route {chain})")
    return Verdict("More EBSD helps (multimodal, grid)", "; ".join(parts), combine(outcomes))


def more_samples(df: pd.DataFrame, kmax: int) -> Verdict:
    """K = kmax against K = 1 of the same sample sets (Chamfer), per fraction; PSNR gain."""
    parts, outcomes = [], []
    if kmax < 2:
        return Verdict("More samples help", "-", NO_DATA)
    for method, fractions in ((MM_GRID, _fractions(df)), (PL_MODEL, [0.0])):
        for f in fractions:
            p = paired(values(df, method, f, "chamfer", kmax), values(df, method, f, "chamfer", 1))
            if p.n:
                o = outcome(p)
                outcomes.append(o)
                parts.append(f"{method.model} {fraction_label(f)}, K={kmax} vs 1: {p.text()} {o}")
    gains = []
    for f in _fractions(df):
        g = paired(values(df, MM_GRID, f, "pl_psnr", kmax), values(df, MM_GRID, f, "pl_psnr", 1))
        gains += [g.diff] if g.n else []
    if gains:
        exact = 10 * math.log10(2 * kmax / (kmax + 1))
        parts.append(
            f"PL PSNR gain K=1 → {kmax} (multimodal): {min(gains):+.2f} to {max(gains):+.2f} dB "
            f"over the fractions (exact posterior samples: {exact:+.2f} dB)"
        )
    return Verdict(
        f"More samples help (Chamfer at K = {kmax} vs 1)",
        "; ".join(parts) or "-",
        combine(outcomes),
    )


def quarter_close_to_full(df: pd.DataFrame, kmax: int) -> Verdict:
    """1/4 keeps >= CLOSE_SHARE of full EBSD's Chamfer gain over no EBSD (multimodal, grid)."""
    c = {f: values(df, MM_GRID, f, "chamfer", kmax) for f in (0.0, 0.25, 1.0)}
    if any(v.empty for v in c.values()):
        return Verdict("1/4 resolution is close to full", "-", NO_DATA)
    m = {f: v.mean() for f, v in c.items()}
    share = (m[0.0] - m[0.25]) / (m[0.0] - m[1.0]) if m[0.0] != m[1.0] else math.nan
    p = paired(c[0.25], c[1.0])
    dis = values(df, MM_GRID, 0.25, "disorientation_mean_deg", kmax).mean()
    bil = values(df, MM_GRID, 0.25, "bilinear_disorientation_mean_deg", kmax).mean()
    text = (
        f"Chamfer none / 1/4 / full: {m[0.0]:.3f} / {m[0.25]:.3f} / {m[1.0]:.3f}: 1/4 keeps "
        f"{100 * share:.0f}% of full EBSD's gain ({m[0.25] / m[1.0]:.1f}x full; 1/4 vs full "
        f"{p.text()}); disorientation at 1/4 {dis:.2f} deg (bilinear {bil:.2f}, full 0)"
    )
    verdict = (HOLDS if share >= CLOSE_SHARE else FAILS) + (UNTESTED if p.n == 1 else "")
    return Verdict(
        f"1/4 resolution is close to full (>= {CLOSE_SHARE:.0%} of the gain)", text, verdict
    )


def beats_ebsd_model(df: pd.DataFrame, kmax: int) -> Verdict:
    """Multimodal against the EBSD model, disorientation (mean, near boundaries), f <= 1/16."""
    parts, outcomes = [], []
    for f in [f for f in _fractions(df) if 0 < f < 1]:
        for metric, name in (
            ("disorientation_mean_deg", "mean"),
            ("disorientation_boundary_deg", "near boundaries"),
        ):
            p = paired(values(df, MM_GRID, f, metric, kmax), values(df, EBSD_GRID, f, metric, kmax))
            if not p.n:
                continue
            o = outcome(p)
            counted = f <= 1 / 16  # "low resolution"; 1/4 is shown for context
            outcomes += [o] if counted else []
            tag = o if counted else f"{o}, context"
            parts.append(f"{fraction_label(f)} {name}: {p.text(2)} {tag}")
    return Verdict(
        "Multimodal beats the EBSD model at low resolution (<= 1/16; disorientation "
        "deg, multimodal vs EBSD model)",
        "; ".join(parts) or "-",
        combine(outcomes),
    )


def no_ebsd_worse_than_pl(df: pd.DataFrame, kmax: int) -> Verdict:
    """With no EBSD the multimodal model is (slightly) worse than the PL model."""
    parts, outcomes = [], []
    for metric in ("chamfer", "blurred_bce"):
        p = paired(values(df, MM_GRID, 0.0, metric, kmax), values(df, PL_MODEL, 0.0, metric, kmax))
        if not p.n:
            continue
        o = outcome(p, claimed_sign=+1)
        outcomes.append(o)
        note = (
            " (worse by more than slightly)" if o.startswith(HOLDS) and p.ratio > SLIGHTLY else ""
        )
        parts.append(f"{metric} multimodal vs PL model: {p.text()} ({p.ratio:.2f}x) {o}{note}")
    return Verdict(
        "No EBSD: multimodal slightly worse than the PL model",
        "; ".join(parts) or "-",
        combine(outcomes),
    )


def misregistration_duplicates(df: pd.DataFrame, kmax: int) -> Verdict:
    """Full EBSD under misregistration: more predicted boundary pixels than without (duplicates
    would double the ratio predicted / true; an interval whose upper end is below
    DUPLICATE_RATIO rules them out)."""
    parts, outcomes = [], []
    for metric, name in (
        ("boundary_pixel_ratio", "default aggregation"),
        ("pl_route_boundary_pixel_ratio", "paper's PL route"),
    ):
        p = paired(
            values(df, MM_GRID, 1.0, metric, kmax, "misregistration"),
            values(df, MM_GRID, 1.0, metric, kmax),
        )
        if not p.n:
            continue
        o = outcome(p, claimed_sign=+1)
        upper = math.exp(p.center + p.half) if p.log else 1 + p.diff + p.half
        if o == NS and upper < DUPLICATE_RATIO:
            o = FAILS  # no increase, and a duplication-sized one is excluded
        if metric == "boundary_pixel_ratio":
            outcomes.append(o)
        parts.append(
            f"{name}: predicted/true boundary pixels misregistered vs aligned {p.text(2)} {o}"
        )
    return Verdict(
        "Full EBSD + misregistration duplicates boundaries (verdict: default aggregation)",
        "; ".join(parts) or "-",
        combine(outcomes),
    )


CLAIMS = (
    beats_sobel,
    more_ebsd,
    more_samples,
    quarter_close_to_full,
    beats_ebsd_model,
    no_ebsd_worse_than_pl,
    misregistration_duplicates,
)


def claim_verdicts(df: pd.DataFrame, kmax: int) -> list[Verdict]:
    """Every claim's verdict on one test set's results rows."""
    return [claim(df, kmax) for claim in CLAIMS]
