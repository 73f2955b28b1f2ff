"""The ingest jobs with real Hydra composition: example files -> ingest -> the main job (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ebsdray.data.symmetry import disorientation_deg
from ebsdray.ingest.example import make_example_files
from ebsdray.ingest.pipeline import ingest
from ebsdray.io import example_ebsd_map_path, open_volume, read_ebsd_map, read_pl_stack

ROOT = Path(__file__).resolve().parents[2]


def composed(name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("home")
    cfg = composed("make_example_files", [f"paths.root={home}"])
    assert cfg["output_dir"] == str(home / "example")
    facts = make_example_files(cfg["output_dir"], noise=cfg["noise"], seed=cfg["seed"])
    return {"home": home, "dir": Path(cfg["output_dir"]), "facts": facts}


def test_example_files_hold_the_shipped_map_and_pl_stacks(example):
    real = read_ebsd_map(example_ebsd_map_path())
    for s in example["facts"]["sections"]:
        vol = read_ebsd_map(s["ebsd"])
        np.testing.assert_array_equal(vol.valid, real.valid)
        ok = real.valid[0]
        assert disorientation_deg(vol.quaternions[0][ok], real.quaternions[0][ok]).max() < 2e-3
        stack = read_pl_stack(s["pl"])
        assert stack.images.shape == (310, 310, 36)  # 216 um of 0.7 um pixels
        np.testing.assert_allclose(stack.angles_deg, np.arange(36) * 10.0)
    warp = np.load(example["dir"] / "known_warp_section0.npz")["displacement"]
    assert warp.shape == (101, 101, 2) and 1.5 < np.abs(warp).max() < 5
    assert json.loads((example["dir"] / "example.json").read_text()) == example["facts"]


def test_ingest_job_composes_the_printed_overrides(example, tmp_path):
    overrides = [*example["facts"]["ingest_overrides"], f"paths.root={example['home']}"]
    overrides = [
        o if not o.startswith("output=") else f"output={tmp_path / 'ti.zarr'}" for o in overrides
    ]
    cfg = composed("ingest", [*overrides, "registration.method=affine"])
    assert (
        cfg["sections"][1]["pl"].endswith("section1_pl.tif") and cfg["pl"]["pixel_size_um"] == 0.7
    )
    summary = ingest(cfg)  # the shipped multimodal model's codec
    assert summary["shape"] == [2, 202, 202] and summary["native_shape"] == [101, 101]
    store = open_volume(summary["store"])
    ing = store.attrs["ingest"]
    assert [s["ebsd_reader"]["reader"] for s in ing["sections"]] == ["ang", "ctf"]
    assert all(s["registration"]["method"] == "affine" for s in ing["sections"])
    assert ing["sections"][0]["pl_reader"]["flat"].endswith("flat.tif")
    assert Path(summary["figures"][1]).is_file() and summary["pl_noise_channels"] < 0.05
    assert ing["config"]["registration"]["method"] == "affine"


@pytest.mark.slow  # 12-28 s on 2 cores: the ingest script in a subprocess, then sampling
def test_walkthrough_files_to_ingest_to_reconstruction(example, tmp_path):
    """The README walkthrough: the ingest script, then the main job on the store, unchanged."""
    env = {**os.environ, "EBSDRAY_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    store = tmp_path / "ti.zarr"
    overrides = [o for o in example["facts"]["ingest_overrides"] if not o.startswith("output=")]
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "ingest.py"), *overrides, f"output={store}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "registration figure" in out.stdout and store.is_dir()
    from ebsdray.volume_job import run

    config = composed(
        "reconstruct_volume",
        [
            f"paths.root={tmp_path}",
            f"volume={store}",
            "crop=[64,64]",
            "sections=[0]",
            "observation.ebsd_fraction=0.25",
            "budget.samples=2",
            "sampler.steps=3",
            "cluster=null",
            "progress=false",
            f"output_dir={tmp_path / 'rec'}",
        ],
    )
    summary = run(config)
    overall = summary["overall"]
    assert np.isfinite(overall["chamfer"]) and np.isfinite(overall["disorientation_mean_deg"])
    assert "pl_psnr" not in overall  # no clean PL exists for measured data
    assert (tmp_path / "rec" / "reconstruction.zarr").is_dir()
