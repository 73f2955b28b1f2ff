"""The zarr volume layout: round trips, chunking, attributes, never damaging existing data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr

from ebsdray.data.rotations import standardize
from ebsdray.data.volume import Volume
from ebsdray.io import volume_store
from ebsdray.io.volume_store import (
    FORMAT_VERSION,
    open_volume,
    read_volume,
    volume_attrs,
    write_volume,
)

D, H, W = 4, 6, 7


def _volume(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 5, (D, H, W)).astype(np.int32)
    q = standardize(rng.normal(size=(D, H, W, 4)))
    valid = ids > 0
    valid[0, 0, 0] = True  # validity is stored as given, not recomputed from the ids
    attrs = {"generator": {"seed": seed, "shape": (D, H, W)}, "pixel": np.float32(0.5)}
    return Volume(ids, q, valid, attrs)


def test_round_trip(tmp_path):
    vol = _volume()
    path = write_volume(vol, tmp_path / "v.zarr", attrs={"codec": {"scale": [1, 2]}})
    assert path.is_absolute() and path == (tmp_path / "v.zarr").resolve()
    back = read_volume(str(path))
    np.testing.assert_array_equal(back.grain_ids, vol.grain_ids)
    np.testing.assert_array_equal(back.valid, vol.valid)
    assert back.grain_ids.dtype == np.int32 and back.valid.dtype == bool
    assert back.quaternions.dtype == np.float32
    np.testing.assert_array_equal(back.quaternions, vol.quaternions.astype(np.float32))
    assert sorted(zarr.open_group(path, mode="r").keys()) == ["grain_ids", "quaternions", "valid"]


def test_grain_table_round_trip(tmp_path):
    vol = _volume()
    assert read_volume(write_volume(vol, tmp_path / "a.zarr")).grain_quaternions is None
    table = standardize(np.random.default_rng(3).normal(size=(5, 4)))
    vol.grain_quaternions = table
    store = open_volume(write_volume(vol, tmp_path / "b.zarr"))
    np.testing.assert_array_equal(store.read().grain_quaternions, table)  # exact, float64
    np.testing.assert_array_equal(store.section(2).grain_quaternions, table)


def test_attributes_round_trip(tmp_path):
    vol = _volume()
    path = write_volume(vol, tmp_path / "v.zarr", attrs={"codec": {"scale": [1, 2]}, "pixel": 2})
    attrs = volume_attrs(path)
    assert attrs["generator"] == {"seed": 0, "shape": [D, H, W]}
    assert attrs["codec"] == {"scale": [1, 2]}
    assert attrs["pixel"] == 2  # extra attrs win over volume.attrs
    assert "ebsdray_version" in attrs and "format" not in attrs
    assert read_volume(path).attrs == attrs
    raw = zarr.open_group(path, mode="r").attrs
    assert raw["format"] == "ebsdray-volume" and raw["format_version"] == FORMAT_VERSION
    # Reading and writing again does not accumulate format keys.
    again = write_volume(read_volume(path), tmp_path / "w.zarr")
    assert volume_attrs(again) == attrs


def test_one_chunk_per_section_and_consolidated(tmp_path):
    path = write_volume(_volume(), tmp_path / "v.zarr")
    root = zarr.open_group(path, mode="r")
    assert root.metadata.consolidated_metadata is not None
    expected = {
        "grain_ids": (1, H, W),
        "quaternions": (1, H, W, 4),
        "valid": (1, H, W),
    }
    for name, chunks in expected.items():
        arr = root[name]
        assert arr.chunks == chunks, name
        assert arr.shards is None, name  # concurrent per-section writers must never share a shard
        assert arr.nchunks_initialized == D, name


def test_lazy_store_reads_sections(tmp_path):
    vol = _volume()
    store = open_volume(write_volume(vol, tmp_path / "v.zarr"))
    assert store.shape == (D, H, W) and len(store) == D
    assert store.attrs["generator"]["seed"] == 0
    sec = store.section(-1)
    assert sec.shape == (1, H, W)
    np.testing.assert_array_equal(sec.grain_ids[0], vol.grain_ids[-1])
    np.testing.assert_array_equal(sec.valid[0], vol.valid[-1])
    # Picklable for Ray workers / DataLoader processes, reopening lazily.
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.section(2).grain_ids[0], vol.grain_ids[2])
    with pytest.raises(IndexError, match="out of range"):
        store.section(D)


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_old_store_with_channels_group_still_opens(tmp_path):
    """Earlier versions wrote derived model channels under ``channels/``: still read, ignored."""
    vol = _volume()
    path = write_volume(vol, tmp_path / "v.zarr", attrs={"codec": {"scale": [1, 2]}})
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    group = root.create_group("channels")
    for name, c in (("ebsd", 3), ("pl", 5)):
        arr = group.create_array(
            name,
            shape=(D, c, H, W),
            dtype="float32",
            chunks=(1, c, H, W),
            fill_value=0.0,
            dimension_names=["z", "c", "y", "x"],
        )
        arr[:] = np.random.default_rng(c).uniform(-1, 1, (D, c, H, W))
    zarr.consolidate_metadata(path)
    assert "channels/pl" in zarr.open_group(path, mode="r")
    store = open_volume(path)
    assert store.shape == (D, H, W) and store.format_version == FORMAT_VERSION
    assert store.attrs["codec"] == {"scale": [1, 2]}
    back = read_volume(path)
    np.testing.assert_array_equal(back.grain_ids, vol.grain_ids)
    np.testing.assert_array_equal(back.quaternions, vol.quaternions.astype(np.float32))
    np.testing.assert_array_equal(back.valid, vol.valid)
    np.testing.assert_array_equal(store.section(1).quaternions[0], back.quaternions[1])
    # Re-writing an old store drops its channels and keeps the rest.
    again = write_volume(back, tmp_path / "w.zarr")
    assert "channels" not in zarr.open_group(again, mode="r")
    np.testing.assert_array_equal(read_volume(again).grain_ids, vol.grain_ids)


def test_refuses_overwrite_and_keeps_existing(tmp_path):
    path = write_volume(_volume(0), tmp_path / "v.zarr")
    with pytest.raises(FileExistsError, match=str(path)):
        write_volume(_volume(1), path)
    np.testing.assert_array_equal(read_volume(path).grain_ids, _volume(0).grain_ids)
    write_volume(_volume(1), path, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).grain_ids, _volume(1).grain_ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.zarr"]  # no leftovers


def test_failed_overwrite_leaves_store_intact(tmp_path, monkeypatch):
    path = write_volume(_volume(0), tmp_path / "v.zarr")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(volume_store.zarr, "consolidate_metadata", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(_volume(1), path, overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_volume(path).grain_ids, _volume(0).grain_ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.zarr"]


def test_never_replaces_foreign_data(tmp_path):
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_volume(_volume(), foreign)
    with pytest.raises(ValueError, match="not an ebsdray volume store"):
        write_volume(_volume(), foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "precious"
    # An existing empty directory is fine.
    (tmp_path / "empty.zarr").mkdir()
    write_volume(_volume(), tmp_path / "empty.zarr")


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_clear_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_volume(tmp_path / "missing.zarr")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="not an ebsdray volume store"):
        read_volume(foreign)
    other = zarr.open_group(tmp_path / "other.zarr", mode="w")
    other.create_array("x", shape=(2,), dtype="int8")
    with pytest.raises(ValueError, match="not an ebsdray volume store"):
        open_volume(tmp_path / "other.zarr")
    path = write_volume(_volume(), tmp_path / "v.zarr")
    zarr.open_group(path, mode="r+", use_consolidated=False).attrs["format_version"] = 99
    zarr.consolidate_metadata(path)
    with pytest.raises(ValueError, match="newer"):
        read_volume(path)


def test_bad_inputs(tmp_path):
    vol = _volume()
    with pytest.raises(TypeError, match="JSON"):
        write_volume(vol, tmp_path / "c.zarr", attrs={"fn": print})
    assert not any(tmp_path.iterdir())
