"""Grain dilation of unindexed pixels, and what it means for simulated observations."""

import numpy as np

import ebsdray
from ebsdray.data.volume import Volume, fill_unindexed
from ebsdray.metrics import grain_boundaries


def test_unindexed_pixels_take_the_nearest_valid_grain_and_stay_invalid():
    ids = np.array([[[1, 1, 0, 2, 2], [1, 0, 0, 0, 2]]], dtype=np.int32)
    q = np.zeros((1, 2, 5, 4))
    q[..., 0] = 1.0
    q[ids == 2] = [0.0, 1.0, 0.0, 0.0]
    vol = Volume(ids, q)
    filled = fill_unindexed(vol)
    # column 2 is as far from grain 1 as from grain 2 in the first row: either is nearest
    assert filled.grain_ids[0, 1, 1] == 1 and filled.grain_ids[0, 1, 3] == 2
    assert (filled.grain_ids > 0).all()
    np.testing.assert_array_equal(filled.valid, vol.valid)  # still unobserved as EBSD
    for label, quat in ((1, [1, 0, 0, 0]), (2, [0, 1, 0, 0])):
        np.testing.assert_array_equal(filled.quaternions[filled.grain_ids == label][0], quat)
    np.testing.assert_array_equal(vol.grain_ids[0, 0], [1, 1, 0, 2, 2])  # input untouched


def test_a_fully_indexed_volume_is_unchanged():
    vol = ebsdray.synthetic_volume((1, 16, 16), seed=3, grain_size=5)
    filled = fill_unindexed(vol)
    np.testing.assert_array_equal(filled.grain_ids, vol.grain_ids)
    np.testing.assert_array_equal(filled.quaternions, vol.quaternions)


def test_a_real_maps_pl_and_scored_boundaries_come_from_the_dilated_map():
    vol = ebsdray.read_ebsd_map(ebsdray.example_ebsd_map_path()).crop(48, 48)
    assert not vol.valid.all()  # the shipped map has unindexed pixels
    model = ebsdray.load_model("multimodal")
    section = ebsdray.observe(vol, ebsd_fraction=1, pl_noise=0.0).section(0, model.codec)
    filled = fill_unindexed(vol)
    # PL is simulated where EBSD failed to index, as for the grain around it ...
    expected = model.codec.encode_section(filled.quaternions[0].astype(np.float64))[3:]
    np.testing.assert_allclose(section.clean[3:].numpy(), expected, atol=1e-6)
    # ... the EBSD there stays unobserved, and the scored boundaries do not stop at it.
    invalid = ~vol.valid[0]
    assert not section.observation.mask[:3, invalid].any()
    np.testing.assert_array_equal(section.truth.valid, vol.valid)
    truth_b = grain_boundaries(section.truth.grain_ids[0])
    np.testing.assert_array_equal(truth_b, grain_boundaries(filled.grain_ids[0]))
    assert truth_b.sum() > grain_boundaries(vol.grain_ids[0]).sum()
