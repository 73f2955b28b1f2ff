"""Paired comparisons and verdicts on hand-made numbers: ratios for positive metrics, differences
where a value is 0, the t interval, and how comparisons combine into a verdict."""

import math

import pandas as pd
import pytest
from scipy import stats

from ebsdray.experiments.claims import FAILS, HOLDS, NS, PARTLY, UNTESTED, combine, outcome
from ebsdray.experiments.stats import fraction_label, paired, select

UNITS = pd.MultiIndex.from_tuples(
    [("a", 0, 0), ("a", 0, 1), ("b", 0, 0), ("b", 0, 1)], names=["volume", "section", "seed"]
)


def series(values):
    return pd.Series(values, index=UNITS[: len(values)], dtype=float)


def test_positive_metrics_are_compared_as_ratios():
    # the same 2x on volumes an order of magnitude apart: a difference test would miss it
    a, b = series([0.8, 0.82, 16.0, 16.4]), series([0.4, 0.4, 8.0, 8.0])
    p = paired(a, b)
    logs = [math.log(x / y) for x, y in zip(a, b, strict=True)]
    half = stats.t.ppf(0.975, 3) * pd.Series(logs).std(ddof=1) / 2
    assert p.log and p.center == pytest.approx(sum(logs) / 4) and p.half == pytest.approx(half)
    assert p.sign == +1 and p.ratio == pytest.approx(math.exp(p.center)) and p.wins == 0
    assert "x2.0" in p.text() and "lower in 0/4" in p.text()
    assert paired(b, a).sign == -1 and paired(b, a).wins == 4
    d = a - b
    assert d.mean() - stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2 < 0  # the difference test: ns


def test_zeros_fall_back_to_differences_and_one_unit_has_no_interval():
    p = paired(series([0.0, 0.1, 0.0, 0.2]), series([1.0, 1.1, 0.9, 1.2]))
    assert not p.log and p.center == pytest.approx(-0.975) and p.sign == -1
    assert "-0.975 ± " in p.text()
    one = paired(series([1.0]), series([2.0]))
    assert one.n == 1 and math.isnan(one.half) and one.sign == 0
    assert outcome(one) == HOLDS + UNTESTED and outcome(one, claimed_sign=+1) == FAILS + UNTESTED
    assert paired(series([1.0, 2.0]), pd.Series(dtype=float)).n == 0


def test_verdicts_combine():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, NS]) == PARTLY
    assert combine([NS, FAILS]) == FAILS
    assert combine([NS, NS]) == NS
    assert combine([HOLDS + UNTESTED, HOLDS]) == HOLDS + UNTESTED
    assert combine(["no data"]) == "no data"


def test_select_matches_fractions_with_a_tolerance():
    df = pd.DataFrame({"fraction": [0.0625, 0.25], "model": ["m", "m"]})
    assert len(select(df, fraction=1 / 16, model="m")) == 1
    assert select(df, nothing=1).empty
    assert [fraction_label(f) for f in (0, 1 / 64, 0.25, 1, 0.3)] == [
        "0",
        "1/64",
        "1/4",
        "1",
        "0.3",
    ]
