"""ebsdray.io: the zarr volume layout and readers for real EBSD maps."""

from ebsdray.io.ebsd_readers import example_ebsd_map_path, read_ebsd_map
from ebsdray.io.segmentation import segment_grains
from ebsdray.io.volume_store import (
    VolumeStore,
    open_volume,
    read_channels,
    read_volume,
    volume_attrs,
    write_volume,
)

__all__ = [
    "VolumeStore",
    "example_ebsd_map_path",
    "open_volume",
    "read_channels",
    "read_ebsd_map",
    "read_volume",
    "segment_grains",
    "volume_attrs",
    "write_volume",
]
