"""PL denoising: mean, spread and decoded intensities."""

from __future__ import annotations

import numpy as np
import pytest

from ebsdray.aggregate.pl import denoise_pl


def test_mean_std_and_intensities(codec, section):
    truth = section.channels[3:]
    offsets = np.array([-0.1, 0.1, -0.1, 0.1], np.float32)[:, None, None, None]
    out = denoise_pl(truth[None] + offsets, codec)
    assert np.allclose(out["channels"], truth, atol=1e-6)
    assert np.allclose(out["std"], 0.1) and np.allclose(out["std_rms"], 0.1)
    assert out["intensities"].shape == (36, *truth.shape[1:])
    assert np.allclose(
        out["intensities"], np.moveaxis(codec.decode_pl(np.moveaxis(truth, 0, -1)), -1, 0)
    )
    assert "intensities" not in denoise_pl(truth[None])
    with pytest.raises(ValueError, match="PL channels"):
        denoise_pl(truth[None, :3], codec)
