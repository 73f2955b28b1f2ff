"""The validation (tuning) volumes are apart from the held-out test volumes."""

import numpy as np
import pytest

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.experiments.volumes import (
    MORE_VALIDATION_SEEDS,
    TEST_VOLUMES,
    VALIDATION_SEEDS,
    validation_volume,
)


def test_validation_seeds_are_not_test_seeds_and_unknown_ones_are_refused():
    validation = set(VALIDATION_SEEDS) | set(MORE_VALIDATION_SEEDS)
    assert len(validation) == 8
    assert not validation & {v["seed"] for v in TEST_VOLUMES.values()}
    with pytest.raises(ValueError, match="unknown validation seed 7101"):
        validation_volume(7101)


def test_5102_has_the_macrozone_texture():
    """Grains of one macrozone are a few degrees apart, so the orientations of 5102's grains are
    far more alike than those of the uniform 5101's."""

    def spread(seed: int) -> float:
        q = np.asarray(validation_volume(seed, sections=1, size=32).grain_quaternions)[1:]
        return float(np.abs(q @ q.T).mean())  # |cos(half angle)| between grains, before symmetry

    assert spread(5102) > spread(5101) + 0.1


@pytest.mark.parametrize("seed", MORE_VALIDATION_SEEDS)
def test_the_added_seeds_take_their_texture_by_parity(seed):
    texture = "uniform" if seed % 2 else TEST_VOLUMES["synthetic_7102"]["texture"]
    expected = synthetic_volume((1, 32, 32), seed=seed, grain_size=10, texture=texture)
    got = validation_volume(seed, sections=1, size=32)
    np.testing.assert_array_equal(got.grain_quaternions, expected.grain_quaternions)
