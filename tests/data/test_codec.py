import json

import numpy as np
import pytest

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.symmetry import disorientation_deg


@pytest.fixture(scope="module")
def codec() -> ChannelCodec:
    q = random_quaternions((20_000,), 0).numpy()
    return ChannelCodec.fit(pl_intensities(q, stage_angles(36)), stage_angles(36))


def test_noise_free_pl_has_five_components(codec):
    # Harmonics 0, 2 and 4 of the stage angle: 1 + 2 + 2 components.
    assert codec.pl_channels == 5
    assert codec.channels == 8
    assert codec.explained_variance_ratio.sum() > 0.99999


def test_ebsd_channels_fill_unit_cube_and_round_trip(codec):
    q = random_quaternions((50_000,), 1).numpy()
    c = codec.encode_ebsd(q)
    assert c.dtype == np.float32 and c.shape == (50_000, 3)
    assert np.abs(c).max() <= 1.0
    assert np.abs(c).max(axis=0).min() > 0.9  # the zone fills the range on every axis
    assert disorientation_deg(codec.decode_ebsd(c), q).max() < 0.01


def test_decode_ebsd_accepts_out_of_range_network_outputs(codec):
    q = codec.decode_ebsd(np.array([[1.7, -3.0, 0.2], [0.0, 0.0, 0.0]]))
    assert np.allclose(np.linalg.norm(q, axis=-1), 1.0)
    assert np.all(q[:, 0] >= 0)


def test_pl_round_trip_and_range(codec):
    intensities = pl_intensities(random_quaternions((5_000,), 2).numpy(), codec.stage_angles_deg)
    z = codec.encode_pl(intensities)
    assert z.shape == (5_000, 5)
    assert np.abs(z).max() < 1.1
    rel = np.abs(codec.decode_pl(z) - intensities).max() / intensities.max()
    assert rel < 1e-4


def test_encode_section_layout(codec):
    q = random_quaternions((6, 7), 3).numpy()
    x = codec.encode_section(q)
    assert x.shape == (8, 6, 7)
    assert np.allclose(x[:3], np.moveaxis(codec.encode_ebsd(q), -1, 0))


def test_serialization_round_trip_through_json(codec):
    again = ChannelCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert again == codec


def test_codecs_fitted_on_different_cpus_are_the_same_encoding(codec):
    # The same PCA on another CPU's BLAS differs in the last bits; a checkpoint must still be
    # accepted for that machine's dataset, while a genuinely different codec is not.
    d = codec.to_dict()
    rounded = ChannelCodec.from_dict(
        {**d, "pl_components": np.asarray(d["pl_components"]) * (1 + 1e-14)}
    )
    assert rounded == codec
    other = ChannelCodec.from_dict({**d, "pl_components": np.asarray(d["pl_components"]) * 1.001})
    assert other != codec


@pytest.mark.parametrize(
    "change, message",
    [({"format": "other"}, "not an ebsdray channel codec"), ({"version": 99}, "version 99")],
)
def test_foreign_or_newer_codec_refused(codec, change, message):
    with pytest.raises(ValueError, match=message):
        ChannelCodec.from_dict({**codec.to_dict(), **change})


def test_wrong_stage_angle_count_refused(codec):
    with pytest.raises(ValueError, match="36"):
        codec.encode_pl(np.zeros((3, 18)))


def test_fit_refuses_nan():
    x = np.ones((10, 36))
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ChannelCodec.fit(x)
