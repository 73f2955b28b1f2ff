"""Fixtures for the metric tests: a small codec and a synthetic section."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ebsdray import ChannelCodec, synthetic_volume
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.pl import pl_intensities, stage_angles

torch.set_num_threads(1)  # a training job may share the machine


@pytest.fixture(scope="session")
def codec() -> ChannelCodec:
    q = random_quaternions((5_000,), 0).numpy()
    return ChannelCodec.fit(pl_intensities(q, stage_angles(36)), stage_angles(36))


@pytest.fixture(scope="session")
def section():
    """(grain_ids (64, 64), quaternions (64, 64, 4) float64) of a synthetic section."""
    vol = synthetic_volume((1, 64, 64), seed=3, grain_size=12)
    return vol.grain_ids[0], vol.quaternions[0].astype(np.float64)
