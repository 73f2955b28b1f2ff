"""The Python API end to end with a tiny trained model: observe -> reconstruct -> evaluate."""

import warnings

import numpy as np
import pytest

import ebsdray
from ebsdray.posterior import merge_section

SMALL = ebsdray.Budget(samples=2, sampler=ebsdray.SamplerSpec(steps=4, particles=2))
TINY = ebsdray.Budget(samples=1, sampler=ebsdray.SamplerSpec(steps=3, particles=1))


@pytest.fixture(scope="module")
def models(tiny_models):
    return {variant: model for variant, (model, _) in tiny_models.items()}


@pytest.fixture(scope="module")
def volume():
    return ebsdray.synthetic_volume((2, 16, 24), seed=5, grain_size=6)  # wider than the window


@pytest.fixture(scope="module")
def result(models, volume):
    obs = ebsdray.observe(volume, ebsd_fraction=1 / 4, pattern="grid", pl_noise=0.05, seed=1)
    return ebsdray.reconstruct(obs, models["multimodal"], SMALL, seed=3, keep_samples=True)


def test_outputs_per_section_with_tiling(result, models):
    assert len(result) == 2
    s = result.sections[1]
    c = models["multimodal"].channels
    assert s.index == 1
    assert s.samples.shape == (2, c, 16, 24)  # 16 x 24 section, 16 x 16 model window: tiled
    assert s.boundary.shape == (16, 24) and s.boundary.dtype == bool
    assert s.boundary_confidence.min() >= 0 and s.boundary_confidence.max() <= 1
    assert s.ebsd_quaternions.shape == (16, 24, 4)
    assert np.allclose(np.linalg.norm(s.ebsd_quaternions, axis=-1), 1, atol=1e-5)
    assert s.pl_denoised.shape == (c - 3, 16, 24)
    assert {"boundary_variance", "ebsd_spread_deg"} <= set(s.uncertainty)
    assert s.info["network_evaluations"] >= SMALL.network_evaluations(1)
    assert result.stack("boundary").shape == (2, 16, 24)


def test_same_seed_same_outputs_whatever_the_section_split(result, models, volume):
    obs = ebsdray.observe(volume, ebsd_fraction=1 / 4, pattern="grid", pl_noise=0.05, seed=1)
    only_second = ebsdray.reconstruct(
        obs, models["multimodal"], SMALL, seed=3, sections=[1], keep_samples=True
    )
    assert np.array_equal(only_second.sections[0].samples, result.sections[1].samples)
    other_seed = ebsdray.reconstruct(
        obs, models["multimodal"], SMALL, seed=4, sections=[1], keep_samples=True
    )
    assert not np.array_equal(other_seed.sections[0].samples, result.sections[1].samples)


def test_observed_ebsd_is_honoured(result, volume):
    # With EBSD on a 1/4 grid, the samples agree with the observation where it was observed.
    from ebsdray.data.symmetry import disorientation_deg

    s = result.sections[0]
    obs = result.observation.section(0, result.codec).observation
    m = obs.mask[0].numpy() > 0
    q = result.codec.decode_ebsd(np.moveaxis(s.samples[0, :3], 0, -1))
    assert disorientation_deg(q, volume.quaternions[0])[m].mean() < 5.0


def test_evaluate_names_model_and_baselines(result):
    m = ebsdray.evaluate(result)
    for name in (
        "chamfer",
        "chamfer_forward",
        "chamfer_backward",
        "blurred_bce",
        "disorientation_mean_deg",
        "disorientation_boundary_deg",
        "pl_psnr",
    ):
        assert name in m and np.isfinite(m[name])
        assert f"sobel_{name}" in m or not name.startswith(("chamfer", "blurred"))
    assert {
        "nearest_disorientation_mean_deg",
        "bilinear_disorientation_mean_deg",
        "observed_pl_psnr",
    } <= set(m)
    rows = ebsdray.evaluate(result, per_section=True)
    assert len(rows) == 2 and rows[0].keys() == m.keys()


@pytest.mark.parametrize("variant, has", [("pl", "boundary"), ("ebsd", "ebsd_quaternions")])
def test_unimodal_models_reconstruct_their_modality(models, volume, variant, has):
    obs = ebsdray.observe(volume, ebsd_fraction=1 / 4, pattern="grid", seed=1)
    r = ebsdray.reconstruct(obs, models[variant], SMALL, seed=0, sections=[0])
    s = r.sections[0]
    assert getattr(s, has) is not None
    assert (s.ebsd_quaternions is None) == (variant == "pl")
    m = ebsdray.evaluate(r, prefix=f"{variant}_model_")
    assert all(k.startswith(f"{variant}_model_") for k in m)


def test_missing_ebsd_modality(models, volume):
    obs = ebsdray.observe(volume, ebsd_fraction=0, pattern="none", seed=1)
    r = ebsdray.reconstruct(obs, models["multimodal"], TINY, sections=[0])
    assert r.sections[0].ebsd_quaternions.shape == (16, 24, 4)
    assert "nearest_disorientation_mean_deg" not in ebsdray.evaluate(r)


def test_the_cost_is_said_before_sampling(models, volume, capsys):
    obs = ebsdray.observe(volume, ebsd_fraction=1 / 4, seed=1)
    ebsdray.reconstruct(obs, models["multimodal"], TINY, sections=[1], evaluate=False)
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ebsdray:")]
    assert len(said) == 1 and "1 sections, 1 posterior samples" in said[0]
    assert "sampling: " in said[0] and "before start-up and merging" in said[0]


def test_replacement_sampler_is_cheaper(models, volume):
    obs = ebsdray.observe(volume, ebsd_fraction=1, seed=1)
    b = ebsdray.Budget(samples=2, sampler=ebsdray.SamplerSpec("replacement", steps=4))
    r = ebsdray.reconstruct(obs, models["multimodal"], b, sections=[0])
    fps = ebsdray.Budget(samples=2, sampler=ebsdray.SamplerSpec("fps_smc", steps=4, particles=2))
    assert r.sections[0].info["network_evaluations"] < fps.network_evaluations(0)


def test_real_map_section(models):
    real = ebsdray.read_ebsd_map(ebsdray.example_ebsd_map_path()).crop(32, 32, top=20, left=20)
    obs = ebsdray.observe(real, ebsd_fraction=1 / 4, pattern="grid", seed=0)
    r = ebsdray.reconstruct(obs, models["multimodal"], TINY)
    assert r.sections[0].boundary.shape == (32, 32)
    assert np.isfinite(ebsdray.evaluate(r)["chamfer"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ebsd_fraction": 1.5}, r"\[0, 1\]"),
        ({"ebsd_fraction": 1 / 9}, "1/9"),
        ({"pattern": "spiral"}, "spiral"),
        ({"pl_noise": float("nan")}, "pl_noise"),
        ({"corruptions": {"dust": {}}}, "dust"),
    ],
)
def test_bad_observations_are_named(volume, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ebsdray.observe(volume, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 0}, "samples"),
        ({"sampler": {"steps": 5000}}, "1000"),
        ({"sampler": {"name": "dps"}}, "dps"),
        ({"samples": 8, "max_samples": 4}, "max_samples"),
        ({"max_samples": 16, "tolerance": 0}, "tolerance"),
        ({"per_section": {2: 0}}, "per-section"),
    ],
)
def test_bad_budgets_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ebsdray.Budget.from_dict(kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"replicas": 0}, "Placement.replicas must be an integer >= 1"),
        ({"samples_per_request": 1.5}, "Placement.samples_per_request must be an integer"),
    ],
)
def test_bad_placements_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ebsdray.Placement(**kwargs)
    assert not ebsdray.Placement().on_ray and ebsdray.Placement(replicas=2).on_ray


def test_the_grain_tolerance_is_the_merges(result, models):
    """``grain_tolerance_deg`` reaches the merge of every section: the stored outputs are those
    of merging the same samples at that tolerance."""
    obs = result.observation
    low = ebsdray.reconstruct(obs, models["multimodal"], SMALL, seed=3, grain_tolerance_deg=2.0)
    assert low.grain_tolerance_deg == 2.0 and result.grain_tolerance_deg == 5.0
    for s, kept in zip(low.sections, result.sections, strict=True):
        section = obs.section(s.index, result.codec)
        merged = merge_section(section, kept.samples, result.codec, "multimodal", seed=3,
                               grain_tolerance_deg=2.0)  # fmt: skip
        np.testing.assert_array_equal(s.boundary, merged.boundary)
        np.testing.assert_array_equal(s.ebsd_quaternions, merged.ebsd_quaternions)


def test_samples_from_the_object_store_merge_as_they_are(result):
    """Ray hands samples out read-only: merging them warns of nothing, writes nothing into them
    and gives what a writable copy gives."""
    s = result.sections[0]
    section = result.observation.section(s.index, result.codec)
    frozen = s.samples.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged = merge_section(section, frozen, result.codec, "multimodal", seed=3)
    np.testing.assert_array_equal(frozen, s.samples)
    again = merge_section(section, s.samples.copy(), result.codec, "multimodal", seed=3)
    np.testing.assert_array_equal(merged.boundary, again.boundary)
    np.testing.assert_array_equal(merged.ebsd_quaternions, again.ebsd_quaternions)


def test_a_grain_tolerance_that_is_no_angle_is_refused(result, models):
    with pytest.raises(ValueError, match="grain_tolerance_deg must be an angle"):
        ebsdray.reconstruct(result.observation, models["multimodal"], TINY, grain_tolerance_deg=0)


def test_sections_out_of_range(models, volume):
    obs = ebsdray.observe(volume, seed=0)
    with pytest.raises(ValueError, match="out of range"):
        ebsdray.reconstruct(obs, models["multimodal"], SMALL, sections=[5])


def test_nan_in_ground_truth_orientations_is_refused(models):
    vol = ebsdray.synthetic_volume((3, 16, 16), seed=2, grain_size=6)
    vol.quaternions[2, 3, 3] = np.nan  # in the last section: refused before the first is sampled
    obs = ebsdray.observe(vol, ebsd_fraction=1, seed=0)
    done = []
    with pytest.raises(ValueError, match="section 2 has 1 indexed pixels with NaN"):
        ebsdray.reconstruct(obs, models["multimodal"], SMALL, on_section=done.append)
    assert done == []
