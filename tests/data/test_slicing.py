import numpy as np
import pytest

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.rotations import axis_angle_to_quaternion, c_axis_in_sample_frame
from ebsdray.data.slicing import (
    SectionFrame,
    extract_section,
    section_image,
    section_shape,
    transform_orientations,
)
from ebsdray.data.symmetry import disorientation_deg

ANGLES = stage_angles(36)  # 10-degree steps: 90 degrees = 9 steps


@pytest.fixture(scope="module")
def volume():
    return synthetic_volume((12, 20, 28), seed=5, grain_size=6)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("rot90", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_frame_is_a_proper_rotation_and_shapes_match(volume, axis, rot90, flip):
    frame = SectionFrame(axis=axis, index=3, rot90=rot90, flip=flip)
    r = frame.frame_rotation()
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    ids, q = extract_section(volume.grain_ids, volume.quaternions, frame)
    assert ids.shape == section_shape(volume.shape, frame) == q.shape[:2]


def test_quarter_turn_shifts_pl_by_90_degrees_of_stage(volume):
    # Turning the sample by 90 degrees on the stage is the same as turning the stage: the PL of the
    # turned section equals the original PL, pixels turned, stage angle shifted by 90 degrees.
    base = SectionFrame(axis=0, index=4)
    turned = SectionFrame(axis=0, index=4, rot90=1)
    _, q0 = extract_section(volume.grain_ids, volume.quaternions, base)
    _, q1 = extract_section(volume.grain_ids, volume.quaternions, turned)
    pl0 = np.rot90(pl_intensities(q0.astype(np.float64), ANGLES), 1, axes=(0, 1))
    pl1 = pl_intensities(q1.astype(np.float64), ANGLES)
    assert np.allclose(pl1, np.roll(pl0, -9, axis=-1), rtol=1e-5, atol=1e-9)
    assert not np.allclose(pl1, pl0, rtol=1e-2)  # the PL really changed


def test_turned_section_equals_section_of_turned_volume(volume):
    # Turn the whole ground truth by 90 degrees about the section normal (arrays and orientations),
    # then cut: the channels are those of cutting first and turning the section.
    rot = SectionFrame(rot90=1).frame_rotation()
    turned_ids = np.rot90(volume.grain_ids, 1, axes=(1, 2))
    turned_q = transform_orientations(np.rot90(volume.quaternions, 1, axes=(1, 2)), rot)
    ids_a, q_a = extract_section(turned_ids, turned_q, SectionFrame(axis=0, index=7))
    ids_b, q_b = extract_section(volume.grain_ids, volume.quaternions, SectionFrame(0, 7, 1))
    assert np.array_equal(ids_a, ids_b)
    assert disorientation_deg(q_a, q_b).max() < 1e-3
    codec = ChannelCodec.fit(pl_intensities(random_quaternions((4000,), 0).numpy(), ANGLES))
    chans_a, chans_b = codec.encode_section(q_a), codec.encode_section(q_b)
    assert np.allclose(chans_a[3:], chans_b[3:], atol=1e-4)  # PL channels
    # EBSD channels agree except where an orientation sits on the zone boundary (two images).
    assert np.mean(np.abs(chans_a[:3] - chans_b[:3]).max(axis=0) < 1e-3) > 0.99


@pytest.mark.parametrize(
    "axis, c_axis_sample, expected_c_in_section",
    [
        (0, [0, 0, 1], [0, 0, 1]),  # c along D: normal to sections along D
        (1, [0, 1, 0], [0, 0, -1]),  # c along H: normal to sections cut across H
        (2, [0, 1, 0], [1, 0, 0]),  # c along H: along the columns of sections cut across W
        (1, [1, 0, 0], [1, 0, 0]),  # c along W: along the columns of sections across H
    ],
)
def test_c_axis_follows_the_frame(axis, c_axis_sample, expected_c_in_section):
    # An orientation whose c-axis points along a known sample direction.
    z = np.array([0.0, 0, 1])
    target = np.asarray(c_axis_sample, dtype=float)
    cross = np.cross(target, z)
    if np.linalg.norm(cross) < 1e-12:
        q = np.array([1.0, 0, 0, 0])
    else:
        # passive g with g^T z = target: the active rotation taking z to target, conjugated
        angle = np.arccos(np.clip(target @ z, -1, 1))
        q_active = axis_angle_to_quaternion(np.cross(z, target), np.array(angle))
        q = q_active * np.array([1, -1, -1, -1])
    assert np.allclose(c_axis_in_sample_frame(q), target, atol=1e-12)
    vol_q = np.broadcast_to(q, (3, 3, 3, 4)).copy()
    _, qs = extract_section(np.ones((3, 3, 3), np.int32), vol_q, SectionFrame(axis=axis, index=1))
    c = c_axis_in_sample_frame(qs[0, 0])
    assert np.allclose(np.abs(c @ np.asarray(expected_c_in_section)), 1.0, atol=1e-12)


def test_c_axis_normal_to_section_gives_constant_pl():
    q = np.array([1.0, 0, 0, 0])  # c along sample z
    vol_q = np.broadcast_to(q, (2, 2, 2, 4)).copy()
    _, qs = extract_section(np.ones((2, 2, 2), np.int32), vol_q, SectionFrame(axis=1, index=0))
    pl_across = pl_intensities(qs[0, 0], ANGLES)
    pl_along = pl_intensities(q, ANGLES)
    assert np.ptp(pl_along) < 1e-12  # theta_c = 0: no contrast
    assert np.ptp(pl_across) > 1e-4  # c now lies in the section plane: full contrast


def test_mirror_is_a_pure_image_flip_for_ids(volume):
    frame = SectionFrame(axis=2, index=5, rot90=3, flip=True)
    plain = SectionFrame(axis=2, index=5, rot90=3)
    assert np.array_equal(
        section_image(volume.grain_ids, frame), section_image(volume.grain_ids, plain)[:, ::-1]
    )


def test_transform_orientations_keeps_dtype_and_unit_norm():
    q = random_quaternions((100,), 0).numpy().astype(np.float32)
    out = transform_orientations(q, SectionFrame(axis=1, rot90=2, flip=True).frame_rotation())
    assert out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=-1), 1, atol=1e-6)
    assert np.all(out[:, 0] >= 0)
