"""ebsdray.io: the zarr volume layout, readers and writers for real EBSD maps, PL TIFF stacks."""

from ebsdray.io.ebsd_readers import example_ebsd_map_path, read_ebsd_map
from ebsdray.io.ebsd_writers import write_ang, write_ctf
from ebsdray.io.pl_stack import read_pl_stack
from ebsdray.io.segmentation import segment_grains
from ebsdray.io.volume_store import (
    VolumeStore,
    open_volume,
    read_volume,
    volume_attrs,
    write_volume,
)

__all__ = [
    "VolumeStore",
    "example_ebsd_map_path",
    "open_volume",
    "read_ebsd_map",
    "read_pl_stack",
    "read_volume",
    "segment_grains",
    "volume_attrs",
    "write_ang",
    "write_ctf",
    "write_volume",
]
