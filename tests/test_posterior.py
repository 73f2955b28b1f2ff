"""Direct tests of ebsdray.posterior's sampler and budget rules and the sums adaptive budgets
watch (the sampling and merging paths are exercised end to end in tests/api and
tests/distributed)."""

from __future__ import annotations

import numpy as np
import pytest

from ebsdray.posterior import Budget, SamplerSpec, aggregate_change, convergence_sums


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "fps-smc"}, r"unknown sampler 'fps-smc' \(SamplerSpec.name\)"),
        ({"steps": 2.5}, "SamplerSpec.steps must be an integer >= 1"),
        ({"steps": 1001}, "SamplerSpec.steps must be <= 1000"),
        ({"particles": 0}, "SamplerSpec.particles must be an integer >= 1"),
        ({"pl_guidance": -1.0}, "SamplerSpec.pl_guidance must be a finite number >= 0"),
        ({"ebsd_guidance": float("nan")}, "SamplerSpec.ebsd_guidance must be a finite number"),
        ({"warm_start_t": 1000}, r"SamplerSpec.warm_start_t must be in \(0, 1000\)"),
    ],
)
def test_a_bad_sampler_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": 0}, "Budget.samples must be an integer >= 1"),
        ({"samples": 2.5}, "Budget.samples must be an integer >= 1"),
        ({"per_section": {3: 0}}, "per-section sample counts must be >= 1"),
        (
            {"samples": 4, "max_samples": 2},
            r"Budget.max_samples must be an integer >= samples \(4\)",
        ),
        ({"tolerance": 0.0}, "Budget.tolerance must be > 0"),
    ],
)
def test_a_bad_budget_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_a_budget_takes_its_sampler_as_a_spec():
    with pytest.raises(TypeError, match=r"Budget\.sampler must be a SamplerSpec; got str"):
        Budget(sampler="fps_smc")
    with pytest.raises(TypeError, match="steps"):  # sampler fields live in the SamplerSpec
        Budget(samples=2, steps=30)


def test_samples_and_cost_per_section():
    fixed = Budget(samples=8, per_section={2: 3})
    assert [fixed.samples_for(i) for i in range(3)] == [8, 8, 3]
    assert fixed.network_evaluations(2) == 30 * 3  # guided: one chain per sample
    smc = Budget(samples=2, sampler=SamplerSpec("fps_smc", steps=50, particles=4))
    assert smc.sampler.evaluations_per_sample == 50 * 4
    assert smc.network_evaluations(0) == 50 * 4 * 2
    assert SamplerSpec("replacement", steps=50, particles=4).evaluations_per_sample == 50
    adaptive = Budget(samples=4, max_samples=16, per_section={1: 32})
    assert adaptive.adaptive and not fixed.adaptive
    assert [adaptive.max_samples_for(i) for i in (0, 1)] == [16, 32]  # a larger K is kept


def test_the_record_rebuilds_the_budget():
    budget = Budget(
        samples=4,
        sampler=SamplerSpec("fps_smc", steps=12, particles=3, warm_start_t=None),
        per_section={1: 32},
        max_samples=16,
    )
    record = budget.to_dict()
    assert record["sampler"] == budget.sampler.to_dict()
    assert record["sampler"]["name"] == "fps_smc" and "steps" not in record
    assert Budget.from_dict(record) == budget
    assert Budget.from_dict({"samples": 2}) == Budget(samples=2)


def test_convergence_sums_add_up_over_requests():
    """What replicas return per request sums to what the whole set gives, in the layout
    aggregate_change reads (edge map first, EBSD channels last)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 16, 16)).astype(np.float32)  # 3 EBSD + 5 PL channels
    whole = convergence_sums(x, "multimodal")
    assert whole.shape == (4, 16, 16)
    np.testing.assert_allclose(
        whole,
        convergence_sums(x[:2], "multimodal") + convergence_sums(x[2:], "multimodal"),
        atol=1e-12,
    )
    assert convergence_sums(x[:, :3], "ebsd").shape == (3, 16, 16)
    assert convergence_sums(x[:, 3:], "pl").shape == (1, 16, 16)
    np.testing.assert_allclose(
        convergence_sums(x[:, :3], "ebsd"), x[:, :3].astype(np.float64).sum(axis=0)
    )


def test_aggregate_change_is_the_larger_of_its_parts():
    before = np.zeros((4, 8, 8))
    after = before.copy()
    assert aggregate_change(before, after, "multimodal") == 0.0
    after[0] += 0.1  # the boundary confidence moved by 0.1 everywhere
    after[1:] += 0.3  # the EBSD channels by 0.3
    assert aggregate_change(before, after, "multimodal") == pytest.approx(0.3)
    assert aggregate_change(before[:1], after[:1], "pl") == pytest.approx(0.1)
    assert aggregate_change(before[1:], after[1:], "ebsd") == pytest.approx(0.3)
