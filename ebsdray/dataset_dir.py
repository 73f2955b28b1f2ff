"""Generate the synthetic training / validation / test volumes and fit the channel codec.

Layout of a dataset directory::

    <data_dir>/
      manifest.json         the generation config, the codec, and every store (relative), by split
      train/<name>.zarr     ebsdray volume stores (see ebsdray.io.volume_store), with the
      val/<name>.zarr         codec in their attributes (training encodes the orientations
      test/<name>.zarr        into model channels on the fly)
      quicklook.png         one section of each split: grains, EBSD, PL, PCA channels
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.dataset import FRAMES
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.slicing import transform_orientations
from ebsdray.data.volume import Volume
from ebsdray.io.volume_store import open_volume, write_volume

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def fit_codec(
    volumes: list[Volume], n_stage_angles: int, pixels: int, seed: int, **fit_options: Any
) -> ChannelCodec:
    """Fit the PL basis on random voxels of ``volumes`` seen in random section frames.

    Sections may be cut along any axis and turned, so the PL the model sees comes from c-axes in
    all 24 frames: the basis is fit on those, not only on sections along D.
    """
    rng = np.random.default_rng(seed)
    angles = stage_angles(n_stage_angles)
    stacks = []
    for v in volumes:
        q = v.quaternions.reshape(-1, 4)[rng.integers(0, v.grain_ids.size, pixels // len(volumes))]
        which = rng.integers(len(FRAMES), size=len(q))
        for k, frame in enumerate(FRAMES):
            sel = which == k
            q_frame = transform_orientations(q[sel].astype(np.float64), frame.frame_rotation())
            stacks.append(pl_intensities(q_frame, angles))
    return ChannelCodec.fit(np.concatenate(stacks), angles, **fit_options)


def _volume_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "name"}


def generate_dataset(
    config: Mapping[str, Any], data_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write every split's volumes, the codec and a quick-look figure to ``data_dir``.

    Parameters
    ----------
    config : ``splits`` (mapping split -> list of volume specs: ``name`` plus keyword arguments of
        :func:`ebsdray.data.microstructure.synthetic_volume`), ``stage_angles`` (R), ``codec``
        (``pixels``, ``seed``, ``explained_variance``).
    data_dir : absolute target directory.
    overwrite : replace a dataset generated from another config. A directory holding a dataset
        from the same config is left as it is (the job is idempotent).

    Returns
    -------
    The manifest (also written to ``data_dir/manifest.json``).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    config = json.loads(json.dumps(dict(config)))  # plain, comparable, JSON-safe
    unknown = set(config["splits"]) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    manifest_path = data_dir / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old["config"] == config:
            print(f"dataset already generated with this config: {data_dir}")
            return old
        if not overwrite:
            raise FileExistsError(
                f"{data_dir} holds a dataset generated from another config; choose another "
                "output_dir or pass overwrite=true"
            )

    t0 = time.perf_counter()
    specs = [(s, spec) for s in SPLITS for spec in config["splits"].get(s, [])]
    volumes: dict[tuple[str, str], Volume] = {}
    for split, spec in tqdm(specs, desc="generating volumes"):
        volumes[split, spec["name"]] = synthetic_volume(**_volume_options(spec))
    train = [v for (s, _), v in volumes.items() if s == "train"]
    if not train:
        raise ValueError("the config has no training volumes: the codec is fit on them")
    codec_cfg = config.get("codec", {})
    codec = fit_codec(
        train,
        int(config.get("stage_angles", 36)),
        pixels=int(codec_cfg.get("pixels", 200_000)),
        seed=int(codec_cfg.get("seed", 0)),
        explained_variance=float(codec_cfg.get("explained_variance", 0.99999)),
    )
    stores: dict[str, list[str]] = {s: [] for s in SPLITS}
    for (split, name), volume in tqdm(volumes.items(), desc="writing stores"):
        path = write_volume(
            volume,
            data_dir / split / f"{name}.zarr",
            attrs={"codec": codec.to_dict(), "split": split, "name": name},
            overwrite=overwrite,
        )
        stores[split].append(str(path.relative_to(data_dir)))  # the directory stays movable
    manifest = {
        "config": config,
        "codec": codec.to_dict(),
        "stores": stores,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    manifest["quicklook"] = "quicklook.png"
    write_quicklook(manifest, data_dir)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def write_quicklook(manifest: Mapping[str, Any], data_dir: Path) -> Path:
    """The quick-look figure: the middle section of the first volume of each split."""
    from ebsdray.figures import quicklook

    codec = ChannelCodec.from_dict(manifest["codec"])
    rows = []
    for split, paths in manifest["stores"].items():
        if not paths:
            continue
        store = open_volume(data_dir / paths[0])
        i = len(store) // 2
        section = store.section(i)
        q = section.quaternions[0].astype(np.float64)
        rows.append(
            {
                "title": f"{split}: {Path(paths[0]).stem} z={i}",
                "grain_ids": section.grain_ids[0],
                "quaternions": q,
                "channels": codec.encode_section(q),
                "intensities": pl_intensities(q, codec.stage_angles_deg),
                "stage_angles_deg": codec.stage_angles_deg,
            }
        )
    return quicklook(rows, data_dir / manifest["quicklook"])


def read_manifest(data_dir: str | Path, splits: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest of a generated dataset, checking that it has volumes in ``splits``.

    Cheap (one small JSON file): jobs call it before any compute to fail fast.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    manifest_path = data_dir / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"no dataset at {data_dir} ({MANIFEST} missing); run `python jobs/generate_data.py` "
            "first or point data_dir at a generated dataset"
        )
    manifest = json.loads(manifest_path.read_text())
    for split in splits:
        if not manifest["stores"].get(split):
            raise ValueError(f"the dataset at {data_dir} has no {split!r} volumes")
    return manifest


def load_split(data_dir: str | Path, split: str) -> tuple[list[Volume], ChannelCodec]:
    """All volumes of one split (in memory) and the dataset's codec."""
    data_dir = Path(data_dir).expanduser().resolve()
    manifest = read_manifest(data_dir, (split,))
    volumes = [open_volume(data_dir / p).read() for p in manifest["stores"][split]]
    return volumes, ChannelCodec.from_dict(manifest["codec"])
