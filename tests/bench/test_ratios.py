"""Cheap checks (counts and equalities, never timings) of what ``bench/suite.py`` measures.

- The exact raster Chamfer equals the suite's brute force over all pairs of points.
- The suite's network-share measurement sees every network evaluation of the sampler: one call
  per run and step, particles x tiles windows each, adding up to ``network_evaluations``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ebsdray
from ebsdray.metrics import chamfer
from ebsdray.posterior import Budget, SamplerSpec

_SPEC = importlib.util.spec_from_file_location(
    "bench_suite", Path(__file__).resolve().parents[2] / "bench" / "suite.py"
)
suite = sys.modules["bench_suite"] = importlib.util.module_from_spec(_SPEC)  # dataclasses
_SPEC.loader.exec_module(suite)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny network calls: 2 threads only add contention (100x slower on a busy 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _masks():
    rng = np.random.default_rng(3)
    for density in (0.0, 0.002, 0.05, 0.5):
        for shape in ((17, 23), (32, 32)):
            yield rng.random(shape) < density, rng.random(shape) < 0.1
    yield suite.boundary_masks(48, grain=8.0, seed=1)


@pytest.mark.parametrize("pred, true", list(_masks()))
def test_exact_chamfer_equals_brute_force(pred, true) -> None:
    for a, b in ((pred, true), (true, pred)):
        got, ref = chamfer(a, b), suite.brute_force_chamfer(a, b)
        assert got.keys() == ref.keys()
        for k in ref:
            assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=0)


@pytest.mark.parametrize("size, tiles", [(32, 1), (48, 4)])
def test_network_share_counts_every_evaluation(size: int, tiles: int) -> None:
    model = ebsdray.load_model("multimodal")
    budget = Budget(samples=2, sampler=SamplerSpec("fps_smc", steps=3, particles=2))
    r = suite.network_share(model, suite.observed_section(model, size), budget, "fp32")
    assert r["network_evaluations"] == r["steps"] * budget.samples * budget.sampler.particles
    assert r["windows"] == r["network_evaluations"] * tiles
    assert r["network_calls"] == r["steps"] * budget.samples  # one call per run and step
    assert 0.0 < r["share"] <= 1.0
