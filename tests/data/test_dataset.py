import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.dataset import FRAMES, WindowDataset, channel_slice
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.dataset_dir import fit_codec


@pytest.fixture(scope="module")
def volumes():
    return [synthetic_volume((10, 40, 48), seed=s, grain_size=8) for s in (1, 2)]


@pytest.fixture(scope="module")
def codec(volumes) -> ChannelCodec:
    return fit_codec(volumes, 36, pixels=20_000, seed=0)


@pytest.mark.parametrize("variant, channels", [("multimodal", 8), ("ebsd", 3), ("pl", 5)])
def test_window_shapes_and_ranges(volumes, codec, variant, channels):
    ds = WindowDataset(volumes, codec, size=16, variant=variant, seed=0)
    x = ds.batch(12, seed=3)
    assert x.shape == (12, channels, 16, 16) and x.dtype == torch.float32
    assert x.abs().max() <= 1.05


def test_fixed_batches_are_reproducible(volumes, codec):
    ds = WindowDataset(volumes, codec, size=16, seed=0)
    assert torch.equal(ds.batch(4, seed=7), ds.batch(4, seed=7))
    assert not torch.equal(ds.batch(4, seed=7), ds.batch(4, seed=8))


def test_grain_lookup_equals_per_pixel_encoding(volumes, codec):
    # The fast path (channels per grain and frame, gathered by id) must give what encoding every
    # pixel in its frame gives.
    fast = WindowDataset(volumes, codec, size=16, seed=0)
    slow = WindowDataset(volumes, codec, size=16, seed=0)
    for source, _ in slow.sources:
        source.tables = None
    assert fast.sources[0][0].tables is not None
    assert torch.allclose(fast.batch(16, seed=1), slow.batch(16, seed=1), atol=1e-5)


def test_intragranular_spread_uses_per_pixel_channels(codec):
    vol = synthetic_volume((6, 24, 24), seed=3, grain_size=8, intragranular_spread_deg=3.0)
    ds = WindowDataset([vol], codec, size=16, seed=0)
    assert ds.sources[0][0].tables is None
    x = ds.batch(2, seed=0)
    assert x.shape == (2, 8, 16, 16)


def test_windows_cover_all_axes(volumes, codec):
    # Sections across H and W exist too: windows restricted to axis 0 differ from the mix.
    only_d = WindowDataset(volumes, codec, size=8, axes=(0,), seed=0).batch(8, seed=2)
    assert len(WindowDataset(volumes, codec, size=8, seed=0).sources[0][1]) == 24
    mixed = WindowDataset(volumes, codec, size=8, seed=0).batch(8, seed=2)
    assert not torch.equal(only_d, mixed)


def test_workers_draw_different_windows(volumes, codec):
    ds = WindowDataset(volumes, codec, size=8, seed=0)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    it = iter(loader)
    a, b = next(it), next(it)  # one batch from each worker
    assert not torch.equal(a, b)


def test_window_larger_than_sections_is_refused(volumes, codec):
    with pytest.raises(ValueError, match="holds a 64 x 64 window"):
        WindowDataset(volumes, codec, size=64, seed=0)


def test_thin_volumes_serve_along_their_large_faces(volumes, codec):
    # D = 10 < 16: only sections along D hold the window.
    ds = WindowDataset(volumes, codec, size=16, seed=0)
    assert all(FRAMES[k].axis == 0 for _, frames in ds.sources for k in frames)


def test_unknown_variant(codec):
    with pytest.raises(ValueError, match="multimodal"):
        channel_slice("rgb", codec)


def test_no_volumes():
    with pytest.raises(ValueError, match="generate_data"):
        WindowDataset([], None, size=8)  # type: ignore[arg-type]


def test_codec_sees_all_frames(volumes, codec):
    # The PL basis is fit on c-axes in every frame, so windows from any frame stay in range.
    ds = WindowDataset(volumes, codec, size=8, axes=(1, 2), seed=0)
    assert np.abs(ds.batch(32, seed=5).numpy()).max() <= 1.05
