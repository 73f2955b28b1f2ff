"""Means with error bars and paired comparisons over the units of a sweep.

A unit is one (volume, section, seed): one observation of one section, seen by every method.
Error bars are standard errors over units; comparisons of two methods are paired over the units
both have, with a 95% Student-t interval of the mean log ratio (positive metrics) or of the mean
difference (lower is better for every metric compared here except PSNR).

    s = per_unit(select(df, model="multimodal", fraction=0.0625, K=8), "chamfer")
    mean, se, n = summary(s)
    p = paired(a, b)           # p.diff, p.half (95% half-width), p.sign (-1, 0, +1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

UNIT = ["volume", "section", "seed"]


def select(df: pd.DataFrame, **eq) -> pd.DataFrame:
    """Rows whose columns equal the given values (floats compared with a tolerance, so
    ``fraction=1 / 16`` matches 0.0625)."""
    keep = np.ones(len(df), bool)
    for col, value in eq.items():
        if col not in df:
            return df.iloc[0:0]
        if isinstance(value, float):
            keep &= np.isclose(df[col].astype(float), value, rtol=1e-9, atol=1e-12)
        else:
            keep &= (df[col] == value).to_numpy()
    return df[keep]


def per_unit(df: pd.DataFrame, metric: str) -> pd.Series:
    """One value per unit (mean over duplicates), NaN and inf dropped; index = UNIT."""
    if df.empty or metric not in df:
        return pd.Series(dtype=float)
    values = df[[*UNIT, metric]].replace([np.inf, -np.inf], np.nan).dropna()
    return values.groupby(UNIT)[metric].mean()


def summary(s: pd.Series) -> tuple[float, float, int]:
    """(mean, standard error, n) of per-unit values; NaN where there are none."""
    n = int(s.size)
    if n == 0:
        return math.nan, math.nan, 0
    se = float(s.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(s.mean()), se, n


@dataclass(frozen=True)
class Paired:
    """A paired comparison of method a against method b over their common units.

    Positive metrics are compared as ratios: the test runs on ``log(a / b)`` per unit, since the
    test volumes differ by an order of magnitude in Chamfer (a difference test would drown a
    consistent 2x in the spread between volumes); with a zero or negative value anywhere, on
    ``a - b``.

    Attributes
    ----------
    n : common units. mean_a, mean_b : arithmetic means over them. diff : mean of a - b.
    log : whether the test ran on log ratios. center : mean of log(a / b), or ``diff``.
    half : 95% t half-width of ``center`` (NaN for n < 2). wins : units where a < b.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    log: bool
    center: float
    half: float
    wins: int

    @property
    def sign(self) -> int:
        """-1: a is significantly lower, +1: significantly higher, 0: neither (or n < 2)."""
        if not math.isfinite(self.half):
            return 0
        if self.center + self.half < 0:
            return -1
        return 1 if self.center - self.half > 0 else 0

    @property
    def ratio(self) -> float:
        """a / b: the geometric mean of the per-unit ratios (log test), else of the means."""
        if self.log:
            return math.exp(self.center)
        return self.mean_a / self.mean_b if self.mean_b else math.nan

    def text(self, digits: int = 3) -> str:
        """``a vs b (x ratio [CI] | diff ± half, lower in w/n)``."""
        if self.n == 0:
            return "no common units"
        if self.log:
            ci = ""
            if math.isfinite(self.half):
                lo, hi = math.exp(self.center - self.half), math.exp(self.center + self.half)
                ci = f", 95% CI x{lo:.2f}-x{hi:.2f}"
            change = f"x{self.ratio:.2f}{ci}"
        else:
            half = "" if not math.isfinite(self.half) else f" ± {self.half:.{digits}f}"
            change = f"{self.diff:+.{digits}f}{half}"
        return (
            f"{self.mean_a:.{digits}f} vs {self.mean_b:.{digits}f} "
            f"({change}, lower in {self.wins}/{self.n})"
        )


def paired(a: pd.Series, b: pd.Series) -> Paired:
    """Compare per-unit values ``a`` and ``b`` (from :func:`per_unit`) on their common units."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    n = len(both)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, False, math.nan, math.nan, 0)
    d = both["a"] - both["b"]
    # a ratio with a 0 (a perfect Chamfer at full EBSD) is 0 or infinite: differences then
    log = bool((both > 0).all().all())
    x = np.log(both["a"] / both["b"]) if log else d
    half = math.nan
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Paired(
        n,
        float(both["a"].mean()),
        float(both["b"].mean()),
        float(d.mean()),
        log,
        float(x.mean()),
        half,
        int((d < 0).sum()),
    )


def fraction_label(f: float) -> str:
    """0, 1/64, 1/16, 1/4, 1 (1/s^2 fractions as such), else ``f:g``."""
    if f in (0, 1):
        return str(int(f))
    inv = 1.0 / f
    return f"1/{round(inv)}" if abs(inv - round(inv)) < 1e-6 else f"{f:g}"


def fmt(mean: float, se: float = math.nan, digits: int = 3) -> str:
    """``mean ± se`` (``-`` for missing)."""
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {se:.{digits}f}" if math.isfinite(se) else "")
