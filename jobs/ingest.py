"""Ingest measured serial sections (EBSD maps + PL TIFF stacks) into one ebsdray volume store.

    python jobs/ingest.py "sections=[{ebsd:/abs/s0.ang,pl:/abs/pl_s0}]" pl.pixel_size_um=1.04 \
        output=/abs/ti.zarr
    python jobs/reconstruct_volume.py volume=/abs/ti.zarr observation.ebsd_fraction=1

Config: configs/ingest.yaml. The work is in :mod:`ebsdray.ingest.pipeline`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from ebsdray.ingest.pipeline import ingest


@hydra.main(version_base="1.3", config_path="../configs", config_name="ingest")
def main(cfg: DictConfig) -> None:
    summary = ingest(OmegaConf.to_container(cfg, resolve=True))
    d, h, w = summary["shape"]
    print(
        f"store: {summary['store']}  ({d} sections of {h} x {w} px at "
        f"{summary['pixel_size_um']:g} um; native EBSD {summary['native_shape']})"
    )
    for path in summary["figures"]:
        print(f"registration figure: {path}")
    if "pl_noise_channels" in summary:
        print(
            f"PL noise estimated at {summary['pl_noise_channels']:.3g} (channel units): keep "
            "observation.pl_noise above it"
        )
    print(f"next: python jobs/reconstruct_volume.py volume={summary['store']}")


if __name__ == "__main__":
    main()
