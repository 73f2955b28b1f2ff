"""Metrics at every K from prefixes of one sample set equal what reconstruct with that K gives;
the sweep's extra metrics and baselines against independent counts."""

import numpy as np
import pytest

import ebsdray
from ebsdray.experiments.measure import (
    EBSD_EDGES_DEG,
    baseline_metrics,
    binned,
    measure,
    prefix_results,
)
from ebsdray.metrics import grain_boundaries
from ebsdray.posterior import section_metrics

BUDGET = dict(sampler=ebsdray.SamplerSpec(steps=3, particles=1))
OUTPUTS = ("boundary", "boundary_confidence", "ebsd_quaternions", "pl_denoised")


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_models["multimodal"][0]


@pytest.fixture(scope="module")
def observation():
    vol = ebsdray.synthetic_volume((1, 16, 16), seed=11, grain_size=6)
    return ebsdray.observe(vol, ebsd_fraction=1 / 4, pattern="grid", pl_noise=0.05, seed=2)


@pytest.fixture(scope="module")
def largest(model, observation):
    b = ebsdray.Budget(samples=3, **BUDGET)
    return ebsdray.reconstruct(observation, model, b, seed=5, keep_samples=True, progress=False)


def test_prefix_k_equals_direct_k(model, observation, largest):
    prefixes = {(k, sec.index): (res, s) for k, sec, res, s in prefix_results(largest, [1, 2, 3])}
    assert sorted(prefixes) == [(1, 0), (2, 0), (3, 0)]
    for k in (1, 2):
        direct = ebsdray.reconstruct(
            observation,
            model,
            ebsdray.Budget(samples=k, **BUDGET),
            seed=5,
            keep_samples=True,
            progress=False,
        )
        for i, d in enumerate(direct.sections):
            res, samples = prefixes[(k, i)]
            assert np.array_equal(samples, d.samples)  # sample j does not depend on K
            for name in OUTPUTS:
                assert np.array_equal(getattr(res, name), getattr(d, name)), (k, i, name)
            for name, u in d.uncertainty.items():
                assert np.array_equal(res.uncertainty[name], u), (k, i, name)
            sec = observation.section(i, model.codec)
            assert section_metrics(res, sec, model.codec) == direct.records[i]["metrics"]
    # the prefixes really differ from one another (the comparison above can fail)
    assert not np.array_equal(prefixes[(1, 0)][0].pl_denoised, prefixes[(3, 0)][0].pl_denoised)


def test_prefix_needs_the_samples(model, observation, largest):
    r = ebsdray.reconstruct(
        observation, model, ebsdray.Budget(samples=1, **BUDGET), seed=5, progress=False
    )
    with pytest.raises(ValueError, match="keep_samples"):
        list(prefix_results(r, [1]))
    with pytest.raises(ValueError, match="K = 4"):
        list(prefix_results(largest, [4]))


def test_measure_adds_counts_and_reliability(model, largest):
    _, sec, res, samples = next(prefix_results(largest, [3]))
    metrics, curves = measure(res, sec, model.codec, model.variant, samples)
    true_b = grain_boundaries(sec.truth.grain_ids[0])
    assert metrics["boundary_pixel_ratio"] == res.boundary.sum() / true_b.sum()
    assert {"pl_route_chamfer", "pl_route_blurred_bce", "pl_route_boundary_pixel_ratio"} <= set(
        metrics
    )
    unobserved = sec.truth.valid[0] & ~(sec.observation.mask[0].numpy() > 0)
    assert sum(curves["ebsd"]["count"]) == unobserved.sum()  # EBSD scored where not observed
    assert sum(curves["pl"]["count"]) == 16 * 16
    assert -1 <= metrics["ebsd_spread_spearman"] <= 1 and metrics["pl_error_over_std"] > 0


def test_binned_sums_by_prediction():
    pred = np.array([0.1, 0.3, 0.3, 5.0, 500.0])
    err = np.array([1.0, 2.0, 4.0, 3.0, 9.0])
    b = binned(pred, err, EBSD_EDGES_DEG)
    assert b["count"][0] == 1 and b["count"][1] == 2 and b["count"][-1] == 1  # 500 -> last bin
    assert b["err"][1] == 6.0 and b["err2"][1] == 20.0 and b["pred"][1] == pytest.approx(0.6)
    assert sum(b["count"]) == 5


def test_baselines_under_the_models_names(model, observation):
    sec = observation.section(0, model.codec)
    base = baseline_metrics(sec, model.codec)
    assert set(base) == {"sobel", "nearest", "bilinear"}
    nothing = ebsdray.SectionResult(0, None, None, None, None, {}, None, {})
    flat = section_metrics(nothing, sec, model.codec)
    assert base["sobel"]["chamfer"] == flat["sobel_chamfer"]
    assert base["sobel"]["pl_psnr"] == flat["observed_pl_psnr"]
    assert base["bilinear"]["disorientation_mean_deg"] == flat["bilinear_disorientation_mean_deg"]
    no_ebsd = ebsdray.observe(observation.truth, ebsd_fraction=0, pattern="none", seed=2)
    assert set(baseline_metrics(no_ebsd.section(0, model.codec), model.codec)) == {"sobel"}
