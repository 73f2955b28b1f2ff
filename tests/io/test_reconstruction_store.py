"""The reconstruction store on its own: layout per variant, section round trips, resume rules."""

import numpy as np
import pytest
import zarr

from ebsdray.io.reconstruction_store import STORE_NAME, ReconstructionStore
from ebsdray.posterior import SectionResult

SHAPE = (3, 8, 10)


def make(out, variant="multimodal", identity=None, keep=True):
    return ReconstructionStore.create(
        out,
        identity=identity or {"seed": 1},
        shape=SHAPE,
        variant=variant,
        pl_channels=5,
        max_samples=4,
        keep_samples=keep,
    )


def result(index, k=2, channels=8):
    rng = np.random.default_rng(index)
    q = rng.normal(size=(8, 10, 4)).astype(np.float32)
    return SectionResult(
        index=index,
        boundary=rng.random((8, 10)) > 0.5,
        boundary_confidence=rng.random((8, 10)).astype(np.float32),
        ebsd_quaternions=q / np.linalg.norm(q, axis=-1, keepdims=True),
        pl_denoised=rng.normal(size=(5, 8, 10)).astype(np.float32),
        uncertainty={
            n: rng.random((8, 10)).astype(np.float32)
            for n in ("boundary_variance", "pl_std", "ebsd_spread_deg")
        },
        samples=rng.normal(size=(k, channels, 8, 10)).astype(np.float32),
        info={"samples": k},
    )


def test_sections_round_trip_and_only_written_ones_count(tmp_path):
    store = make(tmp_path / "run")
    r = result(1, k=3)
    store.write_section(r, {"section": 1, "info": r.info, "metrics": {"chamfer": 0.5}})
    assert store.completed() == [1]
    back = store.section(1)
    np.testing.assert_array_equal(back["boundary"], r.boundary)
    np.testing.assert_array_equal(back["ebsd_quaternions"], r.ebsd_quaternions)
    np.testing.assert_array_equal(back["samples"], r.samples)  # K = 3 of the 4 slots
    assert store.record(1)["metrics"] == {"chamfer": 0.5}
    with pytest.raises(KeyError, match="not finished"):
        store.section(0)


def test_ebsd_only_store_has_no_boundary_arrays(tmp_path):
    store = make(tmp_path / "run", variant="ebsd", keep=False)
    root = zarr.open_group(store.path, mode="r")
    assert "boundary" not in root and "pl_denoised" not in root
    assert list(root["uncertainty"].array_keys()) == ["ebsd_spread_deg"]


def test_same_job_reopens_other_job_is_refused(tmp_path):
    make(tmp_path / "run", identity={"seed": 1, "budget": {"samples": 8}})
    make(tmp_path / "run", identity={"seed": 1, "budget": {"samples": 8}})  # resume
    with pytest.raises(FileExistsError, match=r"budget\.samples: 8 there, 16 now"):
        make(tmp_path / "run", identity={"seed": 1, "budget": {"samples": 16}})


def test_leftover_of_an_interrupted_creation_does_not_block(tmp_path):
    out = tmp_path / "run"
    (out / f".{STORE_NAME}.partial").mkdir(parents=True)
    assert make(out).completed() == []
