"""The data job end to end: real Hydra composition, real zarr stores, the quick-look figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ebsdray.data.codec import ChannelCodec
from ebsdray.dataset_dir import load_split
from ebsdray.io.volume_store import open_volume

ROOT = Path(__file__).resolve().parents[2]
SMALL = (
    "splits={train:[{name:a,seed:1,shape:[4,40,40],grain_size:8},"
    "{name:b,seed:2,shape:[4,40,40],grain_size:8,texture:{kind:fibre,spread_deg:15}}],"
    "val:[{name:v,seed:3,shape:[4,32,32],grain_size:8}],test:[{name:t,seed:4,shape:[4,32,32]}]}"
)


def run_job(home: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EBSDRAY_HOME": str(home)}
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "generate_data.py"), *overrides],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = run_job(home, SMALL, "codec.pixels=20000")
    assert out.returncode == 0, out.stderr
    return home, out


def test_job_writes_splits_codec_and_figure(generated):
    home, out = generated
    data = home / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    assert {s: len(p) for s, p in manifest["stores"].items()} == {"train": 2, "val": 1, "test": 1}
    assert (data / "quicklook.png").stat().st_size > 10_000
    assert str(data / "quicklook.png") in out.stdout
    assert manifest["stores"]["train"] == ["train/a.zarr", "train/b.zarr"]
    # Hydra's run dir goes under the absolute root, not the cwd.
    assert (home / "hydra" / "generate_data").is_dir()
    assert not (home / "outputs").exists()


def test_stores_hold_ground_truth_and_codec(generated):
    home, _ = generated
    volumes, codec = load_split(home / "data", "train")
    store = open_volume(home / "data" / "train" / "a.zarr")
    assert store.attrs["codec"] == codec.to_dict()
    assert store.attrs["config"]["seed"] == 1
    assert store.shape == (4, 40, 40)
    assert "channels" not in store.root  # model channels are derived on the fly, not stored
    # The store's codec encodes the store's orientations into the model's channels.
    q = store.section(2).quaternions[0].astype(np.float64)
    np.testing.assert_array_equal(q, volumes[0].quaternions[2])
    chans = ChannelCodec.from_dict(store.attrs["codec"]).encode_section(q)
    assert chans.shape == (3 + codec.pl_channels, 40, 40) and chans.dtype == np.float32
    assert np.isfinite(chans).all()
    assert np.abs(chans[:3]).max() <= 1 + 1e-6  # EBSD: the zone's extent maps to [-1, 1]
    assert np.abs(chans[3:]).max() <= 1.05  # PL: scaled to [-1, 1] on the codec's fit pixels


def test_rerun_with_same_config_is_a_no_op(generated):
    home, _ = generated
    before = (home / "data" / "train" / "a.zarr" / "zarr.json").stat().st_mtime_ns
    out = run_job(home, SMALL, "codec.pixels=20000")
    assert out.returncode == 0, out.stderr
    assert "already generated" in out.stdout
    assert (home / "data" / "train" / "a.zarr" / "zarr.json").stat().st_mtime_ns == before


def test_other_config_into_same_dir_is_refused_and_keeps_data(generated):
    home, _ = generated
    manifest = (home / "data" / "manifest.json").read_text()
    out = run_job(home, SMALL, "codec.pixels=10000")
    assert out.returncode != 0
    assert "another config" in out.stderr
    assert (home / "data" / "manifest.json").read_text() == manifest


def test_unknown_config_key_is_named(tmp_path):
    out = run_job(tmp_path, "codec.pixelz=5")
    assert out.returncode != 0
    assert "pixelz" in out.stderr
