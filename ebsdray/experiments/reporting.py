"""Shared pieces of the results report: what every section reads (:class:`Ctx`), Markdown
tables, cells and curves of per-unit means with standard errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebsdray.experiments.plan import PLAIN_PL
from ebsdray.experiments.plots import Curve
from ebsdray.experiments.stats import fmt, summary
from ebsdray.experiments.views import Method, k_of, values

GROUP_ORDER = {"synthetic": 0, "real": 1}


@dataclass
class Ctx:
    """What every section of the report reads."""

    df: pd.DataFrame
    records: list[dict[str, Any]]
    config: dict[str, Any]
    summary: dict[str, Any]
    path: Path
    kmax: int
    ks: list[int]

    @property
    def figdir(self) -> Path:
        return self.path.parent / self.path.stem

    def groups(self) -> list[str]:
        found = sorted(set(self.df["group"]), key=lambda g: (GROUP_ORDER.get(g, 9), g))
        return found

    def group(self, g: str) -> pd.DataFrame:
        return self.df[self.df["group"] == g]

    def fractions(self, g: str, models=("multimodal",)) -> list[float]:
        d = self.group(g)
        return sorted({float(f) for f in d[d["model"].isin(models)]["fraction"]})

    def fig(self, path: Path | None, alt: str) -> list[str]:
        if path is None:
            return []
        return [f"![{alt}]({self.figdir.name}/{path.name})", ""]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def cell(df, method: Method, f: float, metric: str, k: int, pl: str = PLAIN_PL, d=3) -> str:
    mean, se, _ = summary(values(df, method, f, metric, k, pl))
    return fmt(mean, se, d)


def curve(df, method, fractions, metric, kmax, pl=PLAIN_PL, x=None) -> Curve:
    stats = [summary(values(df, method, f, metric, k_of(method, kmax), pl)) for f in fractions]
    mean = np.array([s[0] for s in stats])
    se = np.array([s[1] for s in stats])
    xs = np.arange(len(fractions), dtype=float) if x is None else np.asarray(x, float)
    return Curve(method.label, xs, mean, se, dict(method.style))


def missing(what: str, ctx: Ctx) -> list[str]:
    return [f"_{what}: not in this sweep's size (`{ctx.config['plan']['name']}`)._", ""]
