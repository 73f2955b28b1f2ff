"""The methods the report compares, and their per-unit values out of a sweep's results table.

    v = values(df, MM_GRID, fraction=1 / 16, metric="chamfer", k=8)   # pd.Series over units

A method is a model (or a baseline) seen through one observation pattern; baselines have K = 0
(no samples); the PL model, which sees no EBSD, has one value per unit (at fraction 0) that
stands for every fraction (``flat``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ebsdray.experiments.plan import PLAIN_PL, effective_pattern
from ebsdray.experiments.stats import per_unit, select

BASELINE_MODELS = ("sobel", "nearest", "bilinear")


@dataclass(frozen=True)
class Method:
    """A line of the report: ``model`` under EBSD ``pattern`` (for 0 < fraction < 1); ``prefix``
    picks another aggregation's metrics of the same samples (``pl_route_``)."""

    label: str
    model: str
    pattern: str = "grid"
    flat: bool = False
    prefix: str = ""
    style: dict = field(default_factory=dict, hash=False, compare=False)


MM_GRID = Method("multimodal, grid", "multimodal", style={"color": "C0"})
MM_RANDOM = Method(
    "multimodal, random", "multimodal", "random", style={"color": "C0", "ls": "--", "marker": "s"}
)
MM_PL_ROUTE = Method(
    "multimodal, grid, PL route",
    "multimodal",
    prefix="pl_route_",
    style={"color": "C9", "ls": "-.", "marker": "P"},
)
PL_MODEL = Method("PL model (no EBSD)", "pl", flat=True, style={"color": "C2", "marker": "^"})
SOBEL = Method("Sobel on PL", "sobel", style={"color": "C3", "marker": "x"})
SOBEL_RANDOM = Method(
    "Sobel on PL (random obs.)", "sobel", "random", style={"color": "C3", "ls": "--", "marker": "x"}
)
EBSD_GRID = Method("EBSD model, grid", "ebsd", style={"color": "C1", "marker": "D"})
EBSD_RANDOM = Method(
    "EBSD model, random", "ebsd", "random", style={"color": "C1", "ls": "--", "marker": "d"}
)
NEAREST = Method("nearest", "nearest", style={"color": "C4", "marker": "v"})
BILINEAR = Method("bilinear", "bilinear", style={"color": "C5", "marker": "<"})


def k_of(method: Method, kmax: int) -> int:
    return 0 if method.model in BASELINE_MODELS else kmax


def rows(
    df: pd.DataFrame, method: Method, fraction: float, k: int, pl: str = PLAIN_PL
) -> pd.DataFrame:
    """The results rows of ``method`` at ``fraction`` (and K ``k``; baselines: K = 0)."""
    f = 0.0 if method.flat else float(fraction)
    pattern = effective_pattern(f, method.pattern)
    k = 0 if method.model in BASELINE_MODELS else int(k)
    return select(df, model=method.model, fraction=f, pattern=pattern, pl=pl, K=k)


def values(
    df: pd.DataFrame, method: Method, fraction: float, metric: str, k: int, pl: str = PLAIN_PL
) -> pd.Series:
    """Per-unit values (index volume, section, seed) of ``metric`` for ``method``."""
    return per_unit(rows(df, method, fraction, k, pl), method.prefix + metric)
