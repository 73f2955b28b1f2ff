"""ebsdray: multimodal diffusion posterior sampling of EBSD + polarized-light sections, on Ray.

Public names (later layers and users rely on them)::

    synthetic_volume, Volume, pl_intensities, stage_angles,
    disorientation_deg, to_cubochoric, from_cubochoric, reduce_to_fundamental_zone,
    write_volume, read_volume, open_volume, read_ebsd_map, example_ebsd_map_path, ChannelCodec,
    load_model, DiffusionModel, observe, Budget, SamplerSpec, Placement, ReplicaResources,
    reconstruct, evaluate
"""

from ebsdray.api import (
    Budget,
    Placement,
    Reconstruction,
    ReplicaResources,
    SamplerSpec,
    SectionResult,
    evaluate,
    reconstruct,
)
from ebsdray.data.codec import ChannelCodec
from ebsdray.data.cubochoric import from_cubochoric, to_cubochoric
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.symmetry import disorientation_deg, reduce_to_fundamental_zone
from ebsdray.data.volume import Volume
from ebsdray.diffusion.pretrained import DiffusionModel, load_model
from ebsdray.io import example_ebsd_map_path, open_volume, read_ebsd_map, read_volume, write_volume
from ebsdray.observation import ObservedVolume, observe

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "ChannelCodec",
    "DiffusionModel",
    "ObservedVolume",
    "Placement",
    "Reconstruction",
    "ReplicaResources",
    "SamplerSpec",
    "SectionResult",
    "Volume",
    "disorientation_deg",
    "evaluate",
    "example_ebsd_map_path",
    "from_cubochoric",
    "load_model",
    "observe",
    "open_volume",
    "pl_intensities",
    "read_ebsd_map",
    "read_volume",
    "reconstruct",
    "reduce_to_fundamental_zone",
    "stage_angles",
    "synthetic_volume",
    "to_cubochoric",
    "write_volume",
]
