"""Figures: IPF maps with their key, scale bars, colourbars with units, thin boundaries, error maps.

Each test inspects the matplotlib objects (or the written PNG), so a figure that silently loses its
key, bar or colourbar fails. A section and its "reconstruction" are built from a synthetic volume
without a model: the result is the truth turned by small rotations plus one wrong grain.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import imread
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from scipy import ndimage

from ebsdray import ChannelCodec, observe, synthetic_volume
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.ipf import ipf_colors
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.figures import (
    _nice_length,
    add_scale_bar,
    draw_ipf_key,
    label_edges,
    orientation_edges,
    pixel_size,
    quicklook,
    samples_figure,
    section_figure,
    summary_figure,
)
from ebsdray.metrics.boundaries import grain_boundaries
from ebsdray.posterior import SectionResult


# --- a section and a reconstruction of it, without a model ---------------------------------------
def make_codec() -> ChannelCodec:
    q = random_quaternions((3_000,), 0).numpy()
    return ChannelCodec.fit(pl_intensities(q, stage_angles(36)), stage_angles(36))


def make_section(codec: ChannelCodec, step=None, size: int = 48):
    vol = synthetic_volume((1, size, size), seed=4, grain_size=10)
    if step is not None:
        vol.attrs["step_size"] = step
    return observe(vol, ebsd_fraction=0.25, pattern="grid", pl_noise=0.05).section(0, codec)


def make_result(section, codec, variant: str = "multimodal") -> SectionResult:
    rng = np.random.default_rng(0)
    ids, q = section.truth.grain_ids[0], section.truth.quaternions[0].astype(np.float64)
    v = rng.standard_normal((*ids.shape, 3)) * np.radians(0.5)
    q = quaternion_multiply(axis_angle_to_quaternion(v, np.linalg.norm(v, axis=-1)), q)
    q[ids == ids[0, 0]] = (0.6, 0.8, 0.0, 0.0)  # one grain badly wrong: the error map shows it
    boundary = grain_boundaries(ids)
    conf = np.clip(ndimage.gaussian_filter(boundary.astype(float), 1.0) * 2.5, 0, 1)
    has_ebsd, has_pl = variant != "pl", variant != "ebsd"
    uncertainty = {"ebsd_spread_deg": rng.uniform(0, 4, ids.shape)} if has_ebsd else {}
    if has_pl:
        uncertainty["boundary_variance"] = conf * (1 - conf) / 4
    return SectionResult(
        index=section.index,
        boundary=boundary if has_pl else None,
        boundary_confidence=conf.astype(np.float32) if has_pl else None,
        ebsd_quaternions=q.astype(np.float32) if has_ebsd else None,
        pl_denoised=section.clean[3:].numpy() if has_pl else None,
        uncertainty=uncertainty,
        samples=None,
        info={"samples": 8},
    )


@pytest.fixture(scope="module")
def codec():
    return make_codec()


@pytest.fixture(scope="module")
def section(codec):
    return make_section(codec, step=[2.0, 2.0])


@pytest.fixture
def figures(monkeypatch):
    """The figures a call made, kept open (``_save`` closes them) for inspection."""
    made = []
    import ebsdray.figures as figs

    def keep(fig, path):
        made.append(fig)
        fig.savefig(path, dpi=60)
        return path

    monkeypatch.setattr(figs, "_save", keep)
    yield made
    for fig in made:
        plt.close(fig)


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _bars(fig) -> list[AnchoredSizeBar]:
    return [a for ax in fig.axes for a in ax.artists if isinstance(a, AnchoredSizeBar)]


def _colorbar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _key_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() == "ipf-key"]


# --- building blocks -----------------------------------------------------------------------------
def test_pixel_size_reads_step_size_or_falls_back_to_pixels():
    assert pixel_size({"step_size": [0.5, 2.0]}) == (2.0, "µm")  # [dy, dx]: the bar uses dx
    assert pixel_size({}) == (1.0, "px")
    assert pixel_size(None) == (1.0, "px")
    assert pixel_size({"step_size": [0.0, 0.0]}) == (1.0, "px")


@pytest.mark.parametrize(("target", "nice"), [(7.3, 5), (19.9, 10), (20, 20), (0.42, 0.2), (1, 1)])
def test_scale_bar_lengths_are_round_numbers(target, nice):
    assert _nice_length(target) == pytest.approx(nice)


def test_scale_bar_length_matches_its_label():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((50, 101)))
    bar = add_scale_bar(ax, 101, (2.0, "µm"))
    # A fifth of 202 µm is 40.4 µm -> a 20 µm bar, 10 pixels long.
    assert bar.txt_label.get_text() == "20 µm"
    assert bar.size_bar.get_children()[0].get_width() == pytest.approx(10)
    plt.close(fig)


def test_label_edges_mark_pixel_pairs_across_grains_but_not_unindexed():
    ids = np.array([[1, 1, 2], [1, 1, 2], [0, 3, 3]])
    down, right = label_edges(ids)
    assert right.tolist() == [[False, True], [False, True], [False, False]]
    assert down.tolist() == [[False, False, False], [False, True, True]]  # 0 below 1: skipped


def test_orientation_edges_follow_the_disorientation_threshold():
    q = np.zeros((2, 3, 4))
    q[..., 0] = 1.0
    q[:, 2] = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), np.radians(10.0))
    q[1, :2] = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), np.radians(3.0))
    down, right = orientation_edges(q)
    assert right.tolist() == [[False, True], [False, True]]
    assert not down.any()  # 3 degrees: inside a grain


def test_ipf_key_draws_the_triangle_with_three_corner_labels():
    fig, ax = plt.subplots()
    draw_ipf_key(ax)
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["$[0001]$", r"$[2\bar{1}\bar{1}0]$", r"$[10\bar{1}0]$"]
    rgba = ax.images[0].get_array()
    assert rgba.shape[-1] == 4 and 0.45 < rgba[..., 3].mean() < 0.6  # a 30-degree sector
    plt.close(fig)


# --- section figure ------------------------------------------------------------------------------
def test_section_figure_has_ipf_maps_key_bars_colourbars_boundaries_and_error(
    codec, section, figures, tmp_path
):
    result = make_result(section, codec)
    path = section_figure(result, section, codec, tmp_path / "s.png")
    assert path.stat().st_size > 20_000
    fig = figures[0]
    titles = _titles(fig)
    for t in ("super-resolved EBSD", "true EBSD", "boundary confidence (cyan: truth)"):
        assert t in titles
    assert any(t.startswith("error vs truth: mean") for t in titles)
    assert len(_key_axes(fig)) == 1
    # Every map has a scale bar in µm from the truth's step size (48 px * 2 µm / 5 -> 10 µm).
    bars = _bars(fig)
    assert len(bars) == 9 and {b.txt_label.get_text() for b in bars} == {"10 µm"}
    labels = _colorbar_labels(fig)
    assert "disorientation (°)" in labels and "confidence (0-1)" in labels
    assert labels.count("PL intensity I / I₀ (×10⁻³)") == 2
    sr = next(ax for ax in fig.axes if ax.get_title() == "super-resolved EBSD")
    (lines,) = [p for p in sr.patches if p.get_label() == "boundaries"]
    assert lines.get_linewidth() <= 0.6  # thin
    n_edges = sum(e.sum() for e in orientation_edges(result.ebsd_quaternions))
    assert len(lines.get_path().vertices) == 2 * n_edges > 0  # one segment per boundary pair
    # The super-resolved map is coloured by IPF-Z of the result's orientations.
    np.testing.assert_allclose(
        sr.images[0].get_array(), ipf_colors(result.ebsd_quaternions.astype(np.float64)), atol=1e-6
    )
    assert "step 2 µm" in fig._suptitle.get_text()


def test_section_error_map_is_the_disorientation_to_the_truth(codec, section, figures, tmp_path):
    result = make_result(section, codec)
    section_figure(result, section, codec, tmp_path / "s.png")
    err_ax = next(ax for ax in figures[0].axes if ax.get_title().startswith("error vs truth"))
    err = np.asarray(err_ax.images[0].get_array())
    ids = section.truth.grain_ids[0]
    wrong = ids == ids[0, 0]
    assert np.median(err[wrong]) > 20 and np.median(err[~wrong]) < 3


def test_section_figure_without_truth_or_step_uses_pixels(codec, figures, tmp_path):
    sec = make_section(codec)
    result = make_result(sec, codec)
    sec.truth = None
    section_figure(result, sec, codec, tmp_path / "s.png")
    fig = figures[0]
    assert not any(t.startswith("error vs truth") for t in _titles(fig))
    assert {b.txt_label.get_text() for b in _bars(fig)} == {"5 px"}
    assert "pixel size unknown" in fig._suptitle.get_text()


@pytest.mark.parametrize(("variant", "n_keys"), [("pl", 1), ("ebsd", 1)])
def test_section_figure_of_single_modality_models(
    codec, section, figures, tmp_path, variant, n_keys
):
    section_figure(make_result(section, codec, variant), section, codec, tmp_path / "s.png")
    fig = figures[0]
    assert len(_key_axes(fig)) == n_keys  # the truth is an IPF map in both
    has_pl = any("PL intensity I / I₀ (×10⁻³)" == lab for lab in _colorbar_labels(fig))
    assert has_pl == (variant == "pl")


# --- summary, quick-look, samples ----------------------------------------------------------------
def _records(n: int = 5) -> list[dict]:
    return [
        {
            "section": i,
            "info": {"samples": 4},
            "metrics": {
                "chamfer": 1.0 + i,
                "sobel_chamfer": 3.0,
                "disorientation_mean_deg": 2.0,
                "disorientation_boundary_deg": 6.0,
                "pl_psnr": 30.0,
            },
        }
        for i in range(n)
    ]


def test_summary_figure_has_units_and_a_micron_axis_when_the_pixel_size_is_known(figures, tmp_path):
    summary_figure(_records(), tmp_path / "summary.png", pixel=(2.0, "µm"))
    fig = figures[0]
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert "Chamfer distance (px²)" in ylabels
    assert "disorientation to truth (°)" in ylabels and "PSNR (dB)" in ylabels
    chamfer_ax = next(ax for ax in fig.axes if "Chamfer" in ax.get_ylabel())
    (microns,) = chamfer_ax.child_axes  # a squared distance: 4 µm² per px² at 2 µm per pixel
    assert microns.get_ylabel() == "(µm²)"
    assert microns.get_ylim() == pytest.approx(4 * np.array(chamfer_ax.get_ylim()))
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    assert "model, near boundaries" in legend and "Sobel on PL" in legend
    assert "bilinear, mean" not in legend  # no data, no line


def test_summary_figure_without_pixel_size_has_no_micron_axis(figures, tmp_path):
    summary_figure(_records(), tmp_path / "summary.png")
    assert not any(ax.child_axes for ax in figures[0].axes)


def test_quicklook_writes_ipf_maps_with_key_bar_and_pl_colourbars(
    codec, section, figures, tmp_path
):
    truth = section.truth
    q = truth.quaternions[0].astype(np.float64)
    row = {
        "title": "train: a z=0",
        "grain_ids": truth.grain_ids[0],
        "quaternions": q,
        "channels": codec.encode_section(q),
        "intensities": pl_intensities(q, codec.stage_angles_deg),
        "stage_angles_deg": codec.stage_angles_deg,
    }
    path = quicklook([row, row], tmp_path / "quicklook.png")
    assert imread(path).shape[1] > 1000
    fig = figures[0]
    assert len(_key_axes(fig)) == 1 and len(_bars(fig)) == 2
    assert sorted(_colorbar_labels(fig)) == [
        "PCA score (normalized)",
        "PL intensity I / I₀ (×10⁻³)",
    ]
    ipf_ax = next(ax for ax in fig.axes if ax.get_title() == "EBSD IPF-Z")
    np.testing.assert_allclose(ipf_ax.images[0].get_array(), ipf_colors(q), atol=1e-6)


def test_samples_figure_colours_ebsd_by_ipf_and_adds_the_key(codec, section):
    x = section.clean.numpy()[None].repeat(3, 0)
    fig = samples_figure(x, codec, "multimodal")
    try:
        assert len(_key_axes(fig)) == 1
        assert _colorbar_labels(fig) == ["PL intensity I / I₀ (×10⁻³)"]
        q = codec.decode_ebsd(np.moveaxis(x[0, :3], 0, -1))
        np.testing.assert_allclose(fig.axes[0].images[0].get_array(), ipf_colors(q), atol=1e-6)
    finally:
        plt.close(fig)
