"""The figure-and-table sections of the results report, one function per section, each
``section(ctx) -> list of Markdown lines`` for every test set (:mod:`ebsdray.experiments.report`
assembles them)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ebsdray.experiments.plan import PLAIN_PL
from ebsdray.experiments.plots import Curve, Panel, figure
from ebsdray.experiments.reporting import Ctx, cell, curve, missing, table
from ebsdray.experiments.stats import fmt, fraction_label, summary
from ebsdray.experiments.views import (
    BILINEAR,
    EBSD_GRID,
    EBSD_RANDOM,
    MM_GRID,
    MM_PL_ROUTE,
    MM_RANDOM,
    NEAREST,
    PL_MODEL,
    SOBEL,
    SOBEL_RANDOM,
    Method,
    k_of,
    values,
)

# --- boundaries against EBSD fraction (Figs. 7, 8) ------------------------------------------------

BOUNDARY_METRICS = [
    ("chamfer_forward", "forward Chamfer (px^2)"),
    ("chamfer_backward", "backward Chamfer (px^2)"),
    ("chamfer", "bidirectional Chamfer (px^2)"),
    ("blurred_bce", "blurred BCE"),
]


def boundaries_section(ctx: Ctx) -> list[str]:
    out = [
        "## Boundaries against EBSD fraction (paper Fig. 7)",
        "",
        f"At K = {ctx.kmax}, PL noise 0.05. With observed EBSD the default aggregation's boundary "
        "confidence is the share of samples whose EBSD puts a boundary at a pixel, mostly 0 or 1, "
        "and blurred BCE punishes such confident values against a blurred target whatever the "
        "boundaries' quality: the PL route's confidence (the mean Sobel map of the samples' PL, "
        "the paper's P) is the one the paper's BCE measures.",
        "",
    ]
    for g in ctx.groups():
        d, fr = ctx.group(g), ctx.fractions(g)
        if not fr:
            out += missing(f"{g}: multimodal runs", ctx)
            continue
        ticks = [fraction_label(f) for f in fr]
        methods = [MM_GRID, MM_RANDOM, MM_PL_ROUTE, PL_MODEL, SOBEL, SOBEL_RANDOM]
        panels = [
            Panel(label, label, [curve(d, m, fr, metric, ctx.kmax) for m in methods], ticks=ticks)
            for metric, label in BOUNDARY_METRICS
        ]
        path = figure(
            panels,
            ctx.figdir / f"fig7_boundaries_{g}.png",
            f"{g}: boundaries at K = {ctx.kmax}, PL noise 0.05",
        )
        out += [f"### {g}", "", *ctx.fig(path, f"boundaries against EBSD fraction, {g}")]
        rows = []
        for m in methods:
            for metric, label in (BOUNDARY_METRICS[2], BOUNDARY_METRICS[3]):
                cells = [cell(d, m, f, metric, k_of(m, ctx.kmax)) for f in fr]
                if any(c != "-" for c in cells):
                    rows.append([m.label, label, *cells])
        out += table(["method", "metric", *ticks], rows)
    return out


def _reduction(d, method: Method, sobel: Method, f: float, metric: str, kmax: int):
    """Per-unit percent reduction of ``metric`` against Sobel on the same observation."""
    a = values(d, method, f, metric, kmax)
    b = values(d, sobel, 0.0 if method.flat else f, metric, 0)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return summary(100.0 * (both["b"] - both["a"]) / both["b"])


def reduction_section(ctx: Ctx) -> list[str]:
    out = [
        "## Reduction against Sobel (paper Fig. 8)",
        "",
        "Percent reduction of each metric against Sobel on the same observed PL "
        "(100 (Sobel - model) / Sobel per unit; positive = better than Sobel).",
        "",
    ]
    pairs = [(MM_GRID, SOBEL), (MM_RANDOM, SOBEL_RANDOM), (MM_PL_ROUTE, SOBEL), (PL_MODEL, SOBEL)]
    for g in ctx.groups():
        d, fr = ctx.group(g), ctx.fractions(g)
        if not fr:
            continue
        ticks = [fraction_label(f) for f in fr]
        panels, rows = [], []
        for metric, label in BOUNDARY_METRICS:
            curves = []
            for m, sobel in pairs:
                st = [_reduction(d, m, sobel, f, metric, ctx.kmax) for f in fr]
                curves.append(
                    Curve(
                        m.label,
                        np.arange(len(fr), dtype=float),
                        np.array([s[0] for s in st]),
                        np.array([s[1] for s in st]),
                        dict(m.style),
                    )
                )
                if metric in ("chamfer", "blurred_bce"):
                    cells = [fmt(s[0], s[1], 1) for s in st]
                    if any(c != "-" for c in cells):
                        rows.append([m.label, label, *cells])
            panels.append(Panel(f"reduction of {label}", "% vs Sobel", curves, ticks=ticks))
        path = figure(
            panels,
            ctx.figdir / f"fig8_reduction_{g}.png",
            f"{g}: reduction against Sobel, K = {ctx.kmax}",
        )
        out += [f"### {g}", "", *ctx.fig(path, f"reduction against Sobel, {g}")]
        out += table(["method", "metric (% reduction)", *ticks], rows)
    return out


# --- inference scaling (Fig. 9) -------------------------------------------------------------------


def _gain(d, method: Method, f: float, k: int) -> tuple[float, float, int]:
    """Per-unit PL PSNR gain of K = k over K = 1 of the same samples."""
    a, b = values(d, method, f, "pl_psnr", k), values(d, method, f, "pl_psnr", 1)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return summary(both["a"] - both["b"])


def _scaling_lines(d, fr: list[float]) -> list[tuple[str, Method, float, dict]]:
    lines = [
        (f"multimodal {fraction_label(f)}", MM_GRID, f, {"color": f"C{i}"})
        for i, f in enumerate(fr)
    ]
    return [*lines, ("PL model", PL_MODEL, 0.0, {"color": "k", "ls": "--", "marker": "^"})]


def scaling_section(ctx: Ctx) -> list[str]:
    out = ["## Inference scaling: more samples (paper Fig. 9)", ""]
    if len(ctx.ks) < 2:
        return out + missing("several K", ctx)
    ks = np.array(ctx.ks, float)
    exact = 10 * np.log10(2 * ks / (ks + 1))
    for g in ctx.groups():
        d, fr = ctx.group(g), ctx.fractions(g)
        lines = _scaling_lines(d, fr)
        panels, rows, gains = [], [], []
        for metric, label in (BOUNDARY_METRICS[2], BOUNDARY_METRICS[3]):
            curves = []
            for name, m, f, style in lines:
                st = [summary(values(d, m, f, metric, k)) for k in ctx.ks]
                curves.append(
                    Curve(
                        name, ks, np.array([s[0] for s in st]), np.array([s[1] for s in st]), style
                    )
                )
                if metric == "chamfer" and np.isfinite(curves[-1].mean).any():
                    rows.append([name, *[fmt(s[0], s[1]) for s in st]])
            panels.append(Panel(label, label, curves, xlabel="K", logx=True))
        curves = []
        for name, m, f, style in lines:
            st = [_gain(d, m, f, k) for k in ctx.ks]
            curves.append(
                Curve(name, ks, np.array([s[0] for s in st]), np.array([s[1] for s in st]), style)
            )
            if np.isfinite(curves[-1].mean).any():
                gains.append([name, *[fmt(s[0], s[1], 2) for s in st]])
        ref = Curve("exact posterior 10 log10(2K/(K+1))", ks, exact, exact * np.nan)
        panels.append(
            Panel("PL PSNR gain over K = 1", "dB", curves, xlabel="K", logx=True, references=[ref])
        )
        path = figure(panels, ctx.figdir / f"fig9_scaling_{g}.png", f"{g}: against K", columns=3)
        out += [f"### {g}", "", *ctx.fig(path, f"inference scaling, {g}")]
        head = [f"K = {k}" for k in ctx.ks]
        out += ["Bidirectional Chamfer (px^2) against K:", "", *table(["method", *head], rows)]
        gains.append(["exact posterior", *[f"{e:.2f}" for e in exact]])
        out += ["PL PSNR gain over K = 1 (dB):", "", *table(["method", *head], gains)]
    return out


# --- super-resolution (Fig. 10) -------------------------------------------------------------------

SR_METRICS = [
    ("disorientation_mean_deg", "mean disorientation (deg)"),
    ("disorientation_boundary_deg", "near-boundary disorientation (deg)"),
]


def superres_section(ctx: Ctx) -> list[str]:
    out = [
        "## EBSD super-resolution against EBSD fraction (paper Fig. 10)",
        "",
        "Disorientation of the super-resolved map against the truth over all pixels and within "
        "2 px of a true boundary; observed pixels keep their measurement.",
        "",
    ]
    methods = [MM_GRID, MM_RANDOM, EBSD_GRID, EBSD_RANDOM, NEAREST, BILINEAR]
    for g in ctx.groups():
        fr = [f for f in ctx.fractions(g, ("multimodal", "ebsd")) if f > 0]
        if not fr:
            out += missing(f"{g}: runs with EBSD", ctx)
            continue
        d, ticks = ctx.group(g), [fraction_label(f) for f in fr]
        panels = [
            Panel(label, label, [curve(d, m, fr, metric, ctx.kmax) for m in methods], ticks=ticks)
            for metric, label in SR_METRICS
        ]
        path = figure(
            panels,
            ctx.figdir / f"fig10_superres_{g}.png",
            f"{g}: super-resolution at K = {ctx.kmax}",
            columns=2,
        )
        out += [f"### {g}", "", *ctx.fig(path, f"super-resolution, {g}")]
        rows = []
        for m in methods:
            for metric, label in SR_METRICS:
                cells = [cell(d, m, f, metric, k_of(m, ctx.kmax), d=2) for f in fr]
                if any(c != "-" for c in cells):
                    rows.append([m.label, label, *cells])
        out += table(["method", "metric", *ticks], rows)
    return out


# --- robustness -----------------------------------------------------------------------------------


def _settings(d: pd.DataFrame) -> list[str]:
    order = {PLAIN_PL: 0, "noise": 1, "scratches": 2, "misregistration": 3}
    return sorted(set(d["pl"]), key=lambda p: (order.get(p, 9), p))


def _robust_row(d, pl: str, f: float, kmax: int) -> list[str]:
    mm = [cell(d, MM_GRID, f, m, kmax, pl) for m in ("chamfer", "pl_route_chamfer")]
    pm = cell(d, PL_MODEL, 0.0, "chamfer", kmax, pl) if f == 0 else "-"
    ratios = [
        cell(d, MM_GRID, f, m, kmax, pl, 2)
        for m in ("boundary_pixel_ratio", "pl_route_boundary_pixel_ratio")
    ]
    return [
        pl,
        fraction_label(f),
        *mm,
        pm,
        cell(d, SOBEL, f, "chamfer", 0, pl),
        *ratios,
        cell(d, SOBEL, f, "boundary_pixel_ratio", 0, pl, 2),
        cell(d, MM_GRID, f, "pl_psnr", kmax, pl, 1),
        cell(d, SOBEL, f, "pl_psnr", 0, pl, 1),
    ]


def robustness_section(ctx: Ctx) -> list[str]:
    out = [
        "## Robustness: PL noise, scratches, misregistration",
        "",
        "Multimodal on an EBSD grid (K = max), the PL model (no EBSD), Sobel on the same "
        "observed PL. 'PL route': the paper's aggregation (Sobel on the samples' PL) of the same "
        "samples. Boundary pixel ratio = predicted / true boundary pixels (about 2 when "
        "boundaries are duplicated). PL PSNR of the denoised PL against the observed PL's. "
        "Misregistration is ebsdray.observe's: the PL is warped by a smooth field of at most "
        "max_shift_px against the EBSD and the truth (the truth is in the EBSD frame).",
        "",
    ]
    head = [
        "PL",
        "EBSD",
        "Chamfer multimodal",
        "PL route",
        "PL model",
        "Sobel",
        "px ratio multimodal",
        "PL route",
        "Sobel",
        "PL PSNR multimodal",
        "observed",
    ]
    for g in ctx.groups():
        d = ctx.group(g)
        settings = _settings(d[d["model"] == "multimodal"])
        if settings == [PLAIN_PL] or not settings:
            out += missing(f"{g}: corrupted PL", ctx)
            continue
        noisy = d[(d["model"] == "multimodal") & (d["pl"] != PLAIN_PL)]
        fr = sorted({float(f) for f in noisy["fraction"]})
        rows = [_robust_row(d, pl, f, ctx.kmax) for pl in settings for f in fr]
        rows = [r for r in rows if any(c != "-" for c in r[2:])]  # combinations not run
        out += [f"### {g}", "", *table(head, rows)]
    return out


# --- uncertainty ----------------------------------------------------------------------------------


def _curves(ctx: Ctx, g: str, kind: str) -> dict[float, dict[str, np.ndarray]]:
    """Reliability sums of multimodal (grid, plain PL) sample sets at K = max, per fraction."""
    out: dict[float, dict[str, np.ndarray]] = {}
    for rec in ctx.records:
        ident = rec["identity"]
        if (
            ident["model"] != "multimodal"
            or ident["group"] != g
            or ident["pl"] != PLAIN_PL
            or ident["pattern"] == "random"
        ):
            continue
        sums = rec["curves"].get(str(ctx.kmax), {}).get(kind)
        if not sums:
            continue
        into = out.setdefault(
            float(ident["fraction"]), {k: np.zeros(len(v)) for k, v in sums.items()}
        )
        for k, v in sums.items():
            into[k] += np.asarray(v)
    return out


def _reliability_panel(ctx, g, kind: str) -> Panel:
    curves, top = [], 0.0
    for i, (f, s) in enumerate(sorted(_curves(ctx, g, kind).items())):
        ok = s["count"] >= 20  # a bin of a handful of pixels says nothing
        n = np.where(ok, s["count"], np.nan)
        x = s["pred"] / n
        y = s["err"] / n if kind == "ebsd" else np.sqrt(s["err2"] / n)
        curves.append(Curve(f"EBSD {fraction_label(f)}", x, y, y * np.nan, {"color": f"C{i}"}))
        top = max(top, np.nanmax(x, initial=0.0))
    line = np.linspace(0, top or 1, 20)
    if kind == "ebsd":
        ref = Curve("error = spread", line, line, line * np.nan)
        return Panel(
            "EBSD: error vs predicted spread",
            "mean error (deg)",
            curves,
            xlabel="samples' disorientation spread (deg)",
            references=[ref],
        )
    k = ctx.kmax
    ref = Curve("calibrated", line, line * math.sqrt((k + 1) / max(k - 1, 1)), line * np.nan)
    return Panel(
        "PL: error vs predicted std",
        "RMS error (channel units)",
        curves,
        xlabel="samples' PL std (channel units)",
        references=[ref],
    )


def uncertainty_section(ctx: Ctx) -> list[str]:
    k = ctx.kmax
    calibrated = math.sqrt((k + 1) / (k - 1)) if k > 1 else math.nan
    out = [
        "## Uncertainty against error (reliability)",
        "",
        f"Per-pixel predicted spread of the K = {k} samples against the actual error of their "
        "aggregate, binned by the prediction (bins of >= 20 pixels): EBSD disorientation spread "
        "against the super-resolved map's error at unobserved pixels; PL std against the "
        "denoised PL's error. Calibrated PL (exact posterior samples) has RMS error = "
        f"sqrt((K+1)/(K-1)) std = {calibrated:.2f} std. Spearman: rank correlation of spread "
        "and error over a section's pixels (1 = the spread orders the errors perfectly).",
        "",
    ]
    head = [
        "method",
        "EBSD",
        "EBSD Spearman",
        "EBSD error / spread",
        "PL Spearman",
        "PL RMS error / RMS std",
    ]
    metrics = (
        "ebsd_spread_spearman",
        "ebsd_error_over_spread",
        "pl_std_spearman",
        "pl_error_over_std",
    )
    for g in ctx.groups():
        d, fr = ctx.group(g), ctx.fractions(g)
        if k < 2 or not fr:
            out += missing(f"{g}: K >= 2", ctx)
            continue
        panels = [_reliability_panel(ctx, g, "ebsd"), _reliability_panel(ctx, g, "pl")]
        path = figure(
            panels, ctx.figdir / f"reliability_{g}.png", f"{g}: reliability at K = {k}", columns=2
        )
        rows = [
            ["multimodal", fraction_label(f), *[cell(d, MM_GRID, f, m, k, d=2) for m in metrics]]
            for f in fr
        ]
        rows.append(
            ["PL model", "0", "-", "-", *[cell(d, PL_MODEL, 0, m, k, d=2) for m in metrics[2:]]]
        )
        out += [f"### {g}", "", *ctx.fig(path, f"reliability, {g}"), *table(head, rows)]
    return out
