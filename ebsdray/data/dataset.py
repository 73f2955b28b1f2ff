"""Training windows streamed from volumes: random section, axis, quarter turn, mirror and crop.

Every window is physically consistent (orientations re-expressed in the window's frame, PL recomputed
for it; see :mod:`ebsdray.data.slicing`). When orientations are constant within grains, the channels
of every grain are precomputed for each of the 24 discrete frames, so a window is a table lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import product

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ebsdray.conventions import EBSD_CHANNELS
from ebsdray.data.codec import ChannelCodec
from ebsdray.data.slicing import (
    SectionFrame,
    extract_section,
    section_image,
    section_shape,
    transform_orientations,
)
from ebsdray.data.volume import Volume

# (axis, rot90, flip) of every discrete frame; the index into this list keys the lookup tables.
FRAMES = [
    SectionFrame(axis=a, rot90=r, flip=f) for a, r, f in product((0, 1, 2), range(4), (False, True))
]


def channel_slice(variant: str, codec: ChannelCodec) -> slice:
    """Channels of ``[ebsd(3) | pl(C_PL)]`` that a model variant sees."""
    layout = codec.layout(variant)
    # A variant's channels are one run of the data's: after the EBSD ones when it has none.
    start = 0 if layout.has_ebsd else EBSD_CHANNELS
    return slice(start, start + layout.channels)


class _VolumeWindows:
    """Random windows of one volume."""

    def __init__(self, volume: Volume, codec: ChannelCodec, channels: slice) -> None:
        self.volume = volume
        self.codec = codec
        self.channels = channels
        grain_quats = volume.uniform_grain_quaternions()
        self.tables = None
        if grain_quats is not None:
            # (24, G + 1, C): channels of every grain in every frame.
            self.tables = np.stack(
                [
                    codec.encode_section(
                        transform_orientations(grain_quats, f.frame_rotation())[None]
                    )[channels, 0].T
                    for f in FRAMES
                ]
            )

    def frames_fitting(self, size: int, axes: Sequence[int]) -> list[int]:
        """Indices of the frames whose sections hold a ``size`` window."""
        return [
            i
            for i, f in enumerate(FRAMES)
            if f.axis in axes and min(section_shape(self.volume.shape, f)) >= size
        ]

    def window(self, size: int, rng: np.random.Generator, frames: Sequence[int]) -> np.ndarray:
        k = int(rng.choice(frames))
        f = FRAMES[k]
        f = SectionFrame(f.axis, int(rng.integers(self.volume.shape[f.axis])), f.rot90, f.flip)
        h, w = section_shape(self.volume.shape, f)
        r0, c0 = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        crop = (slice(r0, r0 + size), slice(c0, c0 + size))
        if self.tables is not None:
            ids = section_image(self.volume.grain_ids, f, crop)
            return np.moveaxis(self.tables[k][ids], -1, 0)
        _, quats = extract_section(self.volume.grain_ids, self.volume.quaternions, f, crop)
        return self.codec.encode_section(quats)[self.channels]


class WindowDataset(IterableDataset):
    """Endless stream of random windows ``(C, size, size)`` float32 tensors.

    Parameters
    ----------
    volumes : training volumes.
    codec : the channel codec shared by data and model.
    size : window edge in pixels.
    variant : ``multimodal`` (3 + C_PL channels), ``ebsd`` (3) or ``pl`` (C_PL).
    axes : volume axes the sections may be normal to (sections smaller than the window are
        skipped, so thin volumes still serve along their large faces).
    seed : base seed; each DataLoader worker draws from ``SeedSequence([seed, worker_id])``. Give
        each data-parallel rank its own seed.
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        codec: ChannelCodec,
        size: int,
        variant: str = "multimodal",
        axes: Sequence[int] = (0, 1, 2),
        seed: int = 0,
    ) -> None:
        if not volumes:
            raise ValueError("no volumes given; run jobs/generate_data.py first")
        self.size = size
        self.axes = tuple(axes)
        self.seed = seed
        chans = channel_slice(variant, codec)
        sources = [_VolumeWindows(v, codec, chans) for v in volumes]
        self.sources = [(s, s.frames_fitting(size, self.axes)) for s in sources]
        self.sources = [(s, frames) for s, frames in self.sources if frames]
        if not self.sources:
            shapes = [v.shape for v in volumes]
            raise ValueError(
                f"no section of volumes {shapes} along axes {self.axes} holds a {size} x {size} "
                "window; use a smaller window or larger volumes"
            )

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One window (C, size, size) float32 drawn with ``rng``."""
        source, frames = self.sources[int(rng.integers(len(self.sources)))]
        return source.window(self.size, rng, frames).astype(np.float32, copy=False)

    def batch(self, n: int, seed: int) -> torch.Tensor:
        """A fixed batch (n, C, size, size), the same for the same seed (validation sets)."""
        rng = np.random.default_rng(seed)
        return torch.from_numpy(np.stack([self.sample(rng) for _ in range(n)]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, info.id if info else 0]))
        while True:
            yield torch.from_numpy(self.sample(rng))
