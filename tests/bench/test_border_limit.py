"""The observer of ``bench/border_limit.py``: grains as full EBSD sees them, and the straight line
it places blind pixels by."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from ebsdray.aggregate.grains import fill_between_observations
from ebsdray.data.rotations import axis_angle_to_quaternion

_SPEC = importlib.util.spec_from_file_location(
    "bench_border_limit", Path(__file__).resolve().parents[2] / "bench" / "border_limit.py"
)
border_limit = sys.modules["bench_border_limit"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(border_limit)


def test_grains_under_the_tolerance_are_one_grain_and_labels_start_at_one():
    ids = np.repeat(np.array([[1, 2, 3]]), 4, axis=0).repeat(3, axis=1)  # three 3-wide stripes
    angles = {1: 0.0, 2: 3.0, 3: 30.0}  # about the c-axis: 1 and 2 within 5 degrees
    angle = torch.tensor([np.radians(angles[i]) for i in ids.ravel()])
    q = axis_angle_to_quaternion(torch.tensor([0.0, 0.0, 1.0]).expand(angle.numel(), 3), angle)
    merged = border_limit.merged_grains(ids, q.numpy().reshape(*ids.shape, 4), tolerance_deg=5.0)
    assert merged.min() == 1  # 0 would be unindexed to the metrics
    assert len(np.unique(merged[:, :6])) == 1
    assert merged[0, 0] != merged[0, 8]


def test_the_straight_border_observer_is_sure_where_every_line_agrees_and_mostly_right():
    y, x = np.mgrid[:32, :32]
    ids = np.where(x - 0.37 * y - 9.3 > 0, 2, 1)  # one straight border
    observed = (y % 2 == 0) & (x % 2 == 0)
    _, placed = fill_between_observations(np.where(observed, ids, 0), observed)
    seen = np.pad(np.where(observed, ids, 0), 1)
    between = np.array(
        [
            (i, j)
            for i, j in np.argwhere(~observed & ~placed)
            if {1, 2} <= set(seen[i : i + 3, j : j + 3].ravel())
        ]
    )
    own, other = np.argwhere(observed & (ids == 1)), np.argwhere(observed & (ids == 2))
    p = border_limit.own_side_probability(own, other, between.astype(float))
    truth = ids[between[:, 0], between[:, 1]] == 1
    sure = (p == 0) | (p == 1)
    assert sure.any() and np.array_equal(p[sure] == 1, truth[sure])
    assert ((p > 0.5) == truth)[p != 0.5].mean() > 0.85
    assert border_limit.own_side_probability(own, other, own[:3].astype(float)).min() == 1.0
    mixed = np.concatenate([other[:1], own])  # a point of the other grain inside: no line
    assert np.isnan(
        border_limit.own_side_probability(mixed, other, between[:2].astype(float))
    ).all()


def test_an_observer_given_more_pixels_places_the_border_at_least_as_surely():
    y, x = np.mgrid[:32, :32]
    ids = np.where(x - 0.37 * y - 9.3 > 0, 2, 1)
    observed = (y % 2 == 0) & (x % 2 == 0)
    between = border_limit.between_pixels(ids, observed)[::2]  # the blind ones
    i, j, other = (np.array(v) for v in zip(*between, strict=True))
    assert (ids[i, j] != other).all()  # (i, j, other): the pixel is of its own grain
    given = np.ones_like(observed)
    given[i, j] = False  # every pixel but the blind ones
    line = border_limit.line_probabilities(ids, ids, observed, between)
    known = border_limit.line_probabilities(ids, ids, observed, between, support=given)
    sure_line, sure_known = (line == 0) | (line == 1), (known == 0) | (known == 1)
    assert sure_known.sum() > sure_line.sum() and (sure_known | ~sure_line).all()
    assert (known[sure_known] == 1).all()  # certain only on the true side
    assert (known > 0.5).sum() >= (line > 0.5).sum()
