"""Fixtures for the aggregation tests: a codec, a synthetic section and noisy reconstruction sets.

A reconstruction set is built from the true section the way a good posterior sampler would err:
each sample's orientations are the truth turned by small random rotations (then encoded, so
samples near the zone's faces land on either side), and its PL channels carry Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ebsdray import ChannelCodec, synthetic_volume
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply

torch.set_num_threads(1)  # a training job may share the machine


@dataclass
class Section:
    grain_ids: np.ndarray  # (H, W)
    quaternions: np.ndarray  # (H, W, 4) float64
    channels: np.ndarray  # (3 + C_PL, H, W) float32, the truth encoded


@pytest.fixture(scope="session")
def codec() -> ChannelCodec:
    q = random_quaternions((5_000,), 0).numpy()
    return ChannelCodec.fit(pl_intensities(q, stage_angles(36)), stage_angles(36))


@pytest.fixture(scope="session")
def section(codec) -> Section:
    vol = synthetic_volume((1, 64, 64), seed=3, grain_size=12)
    q = vol.quaternions[0].astype(np.float64)
    return Section(vol.grain_ids[0], q, codec.encode_section(q))


def small_rotations(shape: tuple[int, ...], rms_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(..., 4) rotations whose rotation-vector components have standard deviation ``rms_deg``."""
    v = rng.standard_normal((*shape, 3)) * math.radians(rms_deg)
    return axis_angle_to_quaternion(v, np.linalg.norm(v, axis=-1))


def noisy_samples(
    section: Section,
    codec: ChannelCodec,
    k: int,
    *,
    seed: int = 0,
    rotation_deg: float = 5.0,
    channel_noise: float = 0.0,
    pl_noise: float = 0.3,
    grain_c_deg: float = 0.0,
    speckle: float = 0.0,
) -> np.ndarray:
    """(k, 3 + C_PL, H, W) float32 samples: rotated orientations (and/or channel noise) and noisy PL.

    ``grain_c_deg``: each sample turns each grain about its c-axis by a uniform angle in
    +-grain_c_deg (what PL cannot tell); ``speckle``: that fraction of each sample's pixels gets
    a random orientation.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        q = section.quaternions
        if grain_c_deg > 0:
            half = (
                np.deg2rad(rng.uniform(-grain_c_deg, grain_c_deg, section.grain_ids.max() + 1)) / 2
            )
            about_c = np.stack([np.cos(half), 0 * half, 0 * half, np.sin(half)], axis=-1)
            q = quaternion_multiply(about_c[section.grain_ids], q)  # crystal frame: on the left
        if speckle > 0:
            flip = rng.random(q.shape[:2]) < speckle
            q = np.array(q, copy=True)
            q[flip] = random_quaternions((int(flip.sum()),), int(rng.integers(2**31))).numpy()
        if rotation_deg > 0:
            q = quaternion_multiply(small_rotations(q.shape[:2], rotation_deg, rng), q)
        ebsd = np.moveaxis(codec.encode_ebsd(q), -1, 0)
        ebsd = ebsd + channel_noise * rng.standard_normal(ebsd.shape)
        pl = section.channels[3:] + pl_noise * rng.standard_normal(section.channels[3:].shape)
        out.append(np.concatenate([ebsd, pl]))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="session")
def make_samples():
    return noisy_samples
