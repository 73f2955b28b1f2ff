"""Ingest from files made here: store layout and provenance, registration, bad files.

Sections are small synthetic maps (40 x 40 px at 2 um) written as .ang / .ctf, with PL stacks
simulated at 1 um camera pixels by :func:`ebsdray.ingest.example.write_section_files`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.volume import Volume
from ebsdray.ingest.example import GAIN, camera_frames, write_section_files
from ebsdray.ingest.pipeline import ingest
from ebsdray.io import open_volume, write_ang, write_ctf
from ebsdray.io.ebsd_writers import PhaseSpec
from ebsdray.observation import observe

MARGIN = 4.0
LOW_CI = [(3, 4), (20, 30), (33, 9)]  # native pixels below the CI threshold


@pytest.fixture(scope="module")
def codec() -> ChannelCodec:
    q = synthetic_volume((1, 40, 40), seed=2, grain_size=5).quaternions[0].reshape(-1, 4)
    return ChannelCodec.fit(pl_intensities(q.astype(np.float64), stage_angles(36)))


def small_map(seed: int = 5, shape=(40, 40)) -> Volume:
    vol = synthetic_volume((1, *shape), seed=seed, grain_size=8)
    vol.attrs["step_size"] = [2.0, 2.0]
    return vol


def section_files(tmp: Path, name: str, vol: Volume, **kw) -> dict[str, str]:
    pl = {"pl_pixel_um": 1.0, "margin_um": MARGIN, "noise": 0.01, "seed": 1, "corrupt": False}
    files = write_section_files(vol, tmp, name, **{**pl, **kw})
    if files["ebsd"].endswith(".ang"):
        ci = np.full(vol.shape[1:], 0.9)
        for r, c in LOW_CI:
            ci[r, c] = 0.05
        write_ang(vol, files["ebsd"], ci=ci)
    return files


def config(sections, output, **over) -> dict:
    base = {
        "sections": sections,
        "output": str(output),
        "model": "test-codec",
        "pl": {"pixel_size_um": 1.0, "origin_um": [MARGIN, MARGIN]},
        "registration": {"method": "none"},
    }
    for key, value in over.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return base


def tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def two_sections(tmp_path_factory, codec):
    tmp = tmp_path_factory.mktemp("two")
    vol = small_map()
    files = [
        section_files(tmp, "s0", vol),
        section_files(tmp, "s1", vol, ebsd_format="ctf", pl_layout="multipage", seed=2),
    ]
    dark, _ = camera_frames(tifffile.imread(files[1]["pl"]).shape[1:])  # the camera's dark
    tifffile.imwrite(tmp / "dark.tif", np.round(dark).astype(np.uint16))
    summary = ingest(
        config(files, tmp / "ti.zarr", pl={"dark": str(tmp / "dark.tif")}), codec=codec
    )
    return {"tmp": tmp, "vol": vol, "files": files, "summary": summary}


def test_store_holds_measured_pl_and_the_native_lattice(two_sections):
    vol, summary = two_sections["vol"], two_sections["summary"]
    assert summary["shape"] == [2, 80, 80] and summary["pixel_size_um"] == 1.0
    store = open_volume(summary["store"])
    assert store.has_measured and store.format_version == 2
    back = store.read()
    lattice = np.zeros((80, 80), bool)
    lattice[::2, ::2] = True
    assert (back.measured.ebsd_observed == lattice).all()
    expected_valid = vol.valid[0].copy()
    for r, c in LOW_CI:
        expected_valid[r, c] = False
    np.testing.assert_array_equal(back.valid[0, ::2, ::2], expected_valid)  # .ang with low CI
    np.testing.assert_array_equal(back.valid[1, ::2, ::2], vol.valid[0])  # .ctf
    # PL in forward-model units: the map's own PL inside grains (blur and 1% noise aside)
    truth = pl_intensities(vol.quaternions[0].astype(np.float64), stage_angles(36))
    ids = vol.grain_ids[0]
    inner = np.ones_like(ids, bool)
    for axis in (0, 1):
        for shift in (-1, 1):
            inner &= np.roll(ids, shift, axis) == ids
    inner[[0, -1], :] = inner[:, [0, -1]] = False
    got = back.measured.pl_intensities[0, ::2, ::2][inner]
    err = np.abs(got - truth[inner]).mean() / truth[inner].mean()
    assert err < 0.03


def test_provenance_gain_and_noise(two_sections):
    summary = two_sections["summary"]
    attrs = open_volume(summary["store"]).attrs
    ing = attrs["ingest"]
    assert attrs["step_size"] == [1.0, 1.0] and "codec" in attrs
    assert ing["ebsd_step_um"] == [2.0, 2.0] and ing["pl_pixel_size_um"] == 1.0
    assert ing["native_shape"] == [40, 40]
    s0, s1 = ing["sections"]
    assert s0["ebsd"] == two_sections["files"][0]["ebsd"] and s1["pl"].endswith("s1_pl.tif")
    assert s0["pl_files"] == 36 and s1["pl_files"] == 1
    assert s0["ebsd_reader"]["reader"] == "ang" and s1["ebsd_reader"]["reader"] == "ctf"
    assert s0["registration"]["method"] == "none"
    assert s0["registration"]["stage_angle_deg"] in s0["pl_measured_angles_deg"]
    for s in (s0, s1):  # the auto gain undoes the camera's
        assert s["pl_gain"] == pytest.approx(1 / GAIN, rel=0.01)
    assert s0["pl_reader"]["dark"].endswith("dark.tif")
    # 1% of the mean intensity, as simulated, found again from the out-of-harmonic residual
    sigma = (
        0.01
        * pl_intensities(
            two_sections["vol"].quaternions[0].astype(np.float64), stage_angles(36)
        ).mean()
    )
    assert summary["pl_noise_intensity"] == pytest.approx(sigma, rel=0.15)
    figures = summary["figures"]
    assert len(figures) == 2 and all(Path(f).stat().st_size > 10_000 for f in figures)


def test_invalid_pixels_are_unobserved(two_sections, codec):
    store = two_sections["summary"]["store"]
    sec = observe(store, ebsd_fraction=1).section(0, codec)
    mask = sec.observation.ebsd_mask.numpy()
    assert mask.sum() == 40 * 40 - len(LOW_CI) - (~two_sections["vol"].valid).sum()
    for r, c in LOW_CI:
        assert not mask[2 * r, 2 * c]
        assert (sec.observation.y[:3, 2 * r, 2 * c] == 0).all()
    assert not mask[1::2].any() and not mask[:, 1::2].any()  # only native pixels


def test_registration_corrects_a_known_shift(tmp_path, codec):
    n = 64
    vol = small_map(seed=8, shape=(n, n))
    warp = np.zeros((n, n, 2))
    warp[..., 0], warp[..., 1] = 2.0, -1.5  # PL pixel (y, x) shows EBSD pixel (y + 2, x - 1.5)
    files = section_files(tmp_path, "w", vol, ebsd_format="ctf", warp=warp)
    r, c = np.mgrid[0:n, 0:n]
    # what the simulated camera saw at each native pixel centre (its rounding: x - 1.5 -> x - 1)
    seen = vol.grain_ids[0][np.clip(r + 2, 0, n - 1), np.clip(c - 1, 0, n - 1)]
    agree = {}
    for method in ("none", "affine"):
        s = ingest(
            config([files], tmp_path / f"{method}.zarr", registration={"method": method}),
            codec=codec,
        )
        ids = open_volume(s["store"]).read().grain_ids[0, ::2, ::2]
        inside = (ids > 0) & (r < n - 4) & (c > 3)
        agree[method] = _label_agreement(ids[inside], seen[inside])
    assert agree["none"] < 0.85 and agree["affine"] > 0.95
    report = open_volume(tmp_path / "affine.zarr").attrs["ingest"]["sections"][0]["registration"]
    assert report["metric_after"] > report["metric_before"]
    assert "AffineTransform" in report["transform_tfm"]
    assert (tmp_path / "affine_registration" / "section_0000.tfm").is_file()


def test_a_registration_that_makes_things_worse_is_an_error(existing, tmp_path, codec, monkeypatch):
    import ebsdray.ingest.registration as registration

    real = registration.register_ebsd_to_pl

    def backwards(*args, **kwargs):
        reg = real(*args, **kwargs)
        reg.metric_before, reg.metric_after = reg.metric_after, reg.metric_before
        return reg

    monkeypatch.setattr(registration, "register_ebsd_to_pl", backwards)
    cfg = config([existing["files"]], tmp_path / "w.zarr", registration={"method": "affine"})
    with pytest.raises(ValueError, match="lowered the EBSD-PL mutual information"):
        ingest(cfg, codec=codec)
    assert not (tmp_path / "w.zarr").exists()


def _label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels whose label in ``a`` maps to their label in ``b`` (best one-to-one map)."""
    pairs, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    best = {}
    for (x, y), n in zip(pairs.T, counts, strict=True):
        if n > best.get(x, (0, None))[0]:
            best[x] = (n, y)
    return sum(n for n, _ in best.values()) / a.size


def test_angles_are_refused_or_resampled_as_configured(tmp_path, codec):
    vol = small_map()
    angles = np.arange(24) * 15.0
    files = section_files(tmp_path, "a", vol, angles_deg=angles)
    with pytest.raises(ValueError, match=r"24 stage angles, the model's codec 36: missing \[10.0"):
        ingest(config([files], tmp_path / "r.zarr"), codec=codec)
    assert not (tmp_path / "r.zarr").exists()
    s = ingest(config([files], tmp_path / "r.zarr", pl={"angle_mismatch": "resample"}), codec=codec)
    note = open_volume(s["store"]).attrs["ingest"]["sections"][0]["pl_angles"]
    assert note.startswith("resampled from 24 measured angles to the codec's 36")


# --- bad files: one clear error, before anything is written ---------------------------------------


@pytest.fixture(scope="module")
def existing(tmp_path_factory, codec):
    """A good section and a store already ingested from it."""
    tmp = tmp_path_factory.mktemp("existing")
    files = section_files(tmp, "good", small_map())
    store = Path(ingest(config([files], tmp / "store.zarr"), codec=codec)["store"])
    return {"tmp": tmp, "files": files, "store": store}


def _truncate(path: str) -> str:
    lines = Path(path).read_text().splitlines()
    Path(path).write_text("\n".join(lines[:-30]) + "\n")
    return path


def _nan_angle(path: str) -> str:
    lines = Path(path).read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if not ln.startswith("#")) + 7
    lines[i] = "nan " + lines[i].split(" ", 1)[1]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def _ctf_out_of_range(path: str) -> str:
    lines = Path(path).read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("1\t"))
    parts = lines[i].split("\t")
    parts[6] = "190.0"  # Euler2 (Phi) above 180 degrees
    lines[i] = "\t".join(parts)
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def _bad_case(name: str, tmp: Path, good: dict) -> tuple[list[dict], dict]:
    """Files (and config overrides) of one bad input."""
    vol = small_map()
    if name == "unknown format":
        f = section_files(tmp, "u", vol)
        Path(f["ebsd"]).rename(tmp / "u.xyz")
        return [{**f, "ebsd": str(tmp / "u.xyz")}], {}
    if name == "truncated file":
        return [{**good, "ebsd": _truncate(write_ang(vol, tmp / "t.ang"))}], {}
    if name == "wrong phase":
        mg = PhaseSpec(name="Magnesium", a=3.21, c=5.21)
        return [{**good, "ebsd": str(write_ctf(vol, tmp / "mg.ctf", phase=mg))}], {}
    if name == "NaN angles":
        return [{**good, "ebsd": _nan_angle(str(write_ang(vol, tmp / "n.ang")))}], {}
    if name == "out-of-range angles":
        return [{**good, "ebsd": _ctf_out_of_range(str(write_ctf(vol, tmp / "o.ctf")))}], {}
    if name == "mismatched section sizes":
        other = section_files(tmp, "m", small_map(shape=(40, 36)))
        return [good, other], {}
    if name == "missing stage angles":
        f = section_files(tmp, "g", vol)
        next(Path(f["pl"]).glob("pl_100.000deg.tif")).unlink()
        return [f], {}
    if name == "wrong bit depth":
        f = section_files(tmp, "b", vol, pl_layout="multipage")
        pages = tifffile.imread(f["pl"])
        tifffile.imwrite(
            f["pl"],
            (pages // 256).astype(np.uint8),
            metadata={"stage_angles_deg": stage_angles(36).tolist()},
        )
        return [f], {}
    if name == "PL does not cover the map":
        return [good], {"pl": {"origin_um": [60.0, 0.0]}}
    raise AssertionError(name)


BAD = {
    "unknown format": "unsupported suffix '.xyz'",
    "truncated file": "truncated",
    "wrong phase": "'Magnesium'.*c/a = 1.623",
    "NaN angles": "non-finite",
    "out-of-range angles": "outside the degree ranges",
    "mismatched section sizes": "mismatched section sizes: section 1.*40 x 36",
    "missing stage angles": r"35 stage angles, the model's codec 36: missing \[100.0\]",
    "wrong bit depth": "uint8 pixels, but a 16-bit camera stack must be uint16",
    "PL does not cover the map": "does not cover the EBSD field",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_clearly_and_leaves_the_store(existing, tmp_path, codec, case):
    before = tree_hash(existing["store"])
    sections, over = _bad_case(case, tmp_path, existing["files"])
    cfg = config(sections, existing["store"], overwrite=True, **over)
    with pytest.raises(ValueError, match=BAD[case]):
        ingest(cfg, codec=codec)
    assert tree_hash(existing["store"]) == before
    leftovers = [p.name for p in existing["store"].parent.iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_an_existing_store_needs_overwrite(existing, codec):
    before = tree_hash(existing["store"])
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        ingest(config([existing["files"]], existing["store"]), codec=codec)
    assert tree_hash(existing["store"]) == before
    zarr.open_group(existing["store"], mode="r")  # still a readable store


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"pl": {"pixel_size_um": None}}, "pl.pixel_size_um must be set"),
        ({"registration": {"method": "rigid"}}, "registration.method must be one of"),
        ({"pl": {"bit_depht": 12}}, r"unknown config keys \['bit_depht'\] in pl"),
        ({"sections": []}, "no sections to ingest"),
    ],
)
def test_bad_config_is_named(existing, tmp_path, codec, over, message):
    cfg = config([existing["files"]], tmp_path / "x.zarr")
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ValueError, match=message):
        ingest(cfg, codec=codec)
    assert not (tmp_path / "x.zarr").exists()


def test_stated_model_pixel_size(existing, tmp_path, codec):
    cfg = config([existing["files"]], tmp_path / "p.zarr", grid={"pixel_size_um": 0.8})
    s = ingest(cfg, codec=codec)
    assert s["shape"] == [1, 100, 100]
    sec = observe(s["store"], ebsd_fraction=1).section(0, codec)
    rows = np.flatnonzero(sec.observation.ebsd_mask.numpy().any(axis=1))
    assert rows.size == 40 and set(np.diff(rows)) <= {2, 3}
    assert math.isclose(open_volume(s["store"]).attrs["ingest"]["pixel_size_um"], 0.8)
