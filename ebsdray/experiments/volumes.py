"""The held-out test volumes of the quality report and the experiments, and volume specs.

    vol = held_out_volume("synthetic_7101", sections=2)     # (2, 64, 64), uniform texture
    vol = held_out_volume("real")                            # the shipped real Ti map, 96 x 96
    vol, source = load_volume({"test": "synthetic_7102", "sections": 1})
    vol, source = load_volume({"volume": "/abs/ti.zarr", "crop": [96, 96]})  # as the main job

The synthetic seeds and textures are in no training split of ``configs/generate_data.yaml`` and
are not the validation seeds the sampler (5101, 5102) and the aggregation (5101-5104; the split's
brightness threshold 5101-5108) were tuned on: ``synthetic_volume((2, 64, 64), seed=s,
grain_size=10, texture=t)`` with ``t`` uniform for the odd seeds and ``synthetic_7102``'s
macrozones for the even ones. Never report on those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.volume import Volume
from ebsdray.io import example_ebsd_map_path, read_ebsd_map
from ebsdray.io.volume_store import VolumeStore

TEST_VOLUMES: dict[str, dict[str, Any]] = {
    "synthetic_7101": {"seed": 7101, "grain_size": 10, "texture": "uniform"},
    "synthetic_7102": {
        "seed": 7102,
        "grain_size": 10,
        "texture": {"kind": "macrozones", "n_zones": 4, "zone_size": 50, "spread_deg": 12},
    },
}
REAL = "real"
REAL_CROP = (96, 96)  # the 101 x 101 map cut to a size every grid step of 1/64..1 divides


def held_out_volume(name: str, sections: int = 1, size: int = 64) -> Volume:
    """A held-out test volume by name.

    Parameters
    ----------
    name : a key of :data:`TEST_VOLUMES` (synthetic, ``(sections, size, size)``) or ``"real"``
        (the shipped real Ti EBSD map, one section, cropped to :data:`REAL_CROP`; PL is
        simulated from its orientations by :func:`ebsdray.observe`).
    """
    if name == REAL:
        return read_ebsd_map(example_ebsd_map_path()).crop(*REAL_CROP)
    if name not in TEST_VOLUMES:
        raise ValueError(f"unknown test volume {name!r}; choose from {[*TEST_VOLUMES, REAL]}")
    return synthetic_volume((int(sections), size, size), **TEST_VOLUMES[name])


VALIDATION_SEEDS = (5101, 5102, 5103, 5104)  # the tuning volumes (module docstring)
# Four more, added to choose split_by_image's brightness threshold (bench/grain_thresholds.py),
# where the first four could not tell its candidates apart.
MORE_VALIDATION_SEEDS = (5105, 5106, 5107, 5108)


def validation_volume(seed: int, sections: int = 2, size: int = 64) -> Volume:
    """A validation (tuning) volume, ``(sections, size, size)``: uniform texture for the odd seeds
    (5101, 5103, ...), ``synthetic_7102``'s macrozones for the even ones. For tuning, never for
    reports."""
    known = VALIDATION_SEEDS + MORE_VALIDATION_SEEDS
    if seed not in known:
        raise ValueError(f"unknown validation seed {seed}; choose from {known}")
    texture = "uniform" if seed % 2 else TEST_VOLUMES["synthetic_7102"]["texture"]
    return synthetic_volume((int(sections), size, size), seed=seed, grain_size=10, texture=texture)


def load_volume(spec: Mapping[str, Any]) -> tuple[Volume | VolumeStore, dict[str, Any]]:
    """A volume from a spec, and a description of its source.

    Parameters
    ----------
    spec : ``{"test": name, "sections": n}`` (:func:`held_out_volume`), or the main job's inputs
        ``{"volume": path | "example" | None, "synthetic": {...}, "crop": [H, W]}``
        (:func:`ebsdray.volume_job.load_input`), e.g. an ingested store of real PL + EBSD.
        ``group`` (optional) is only read by the report.
    """
    if "test" in spec:
        sections = int(spec.get("sections", 1))
        return held_out_volume(spec["test"], sections), {"test": spec["test"], "sections": sections}
    from ebsdray.volume_job import load_input  # the job's input rules, not a copy of them

    return load_input(spec.get("volume"), dict(spec.get("synthetic") or {}), spec.get("crop"))


def volume_group(name: str, spec: Mapping[str, Any]) -> str:
    """The test set a volume belongs to in the report: ``spec["group"]``, else ``"real"`` for
    the real map, ``"synthetic"`` for the synthetic test volumes, else the volume's name."""
    if "group" in spec:
        return str(spec["group"])
    if spec.get("test") == REAL or spec.get("volume") == "example":
        return "real"
    if spec.get("test") in TEST_VOLUMES or ("volume" in spec and spec["volume"] is None):
        return "synthetic"
    return name
