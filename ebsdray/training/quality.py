"""Quality measures of generated samples (pure functions of arrays).

* grain coherence: decoded EBSD orientations should form grains, i.e. most 4-neighbour pixel pairs
  lie within a few degrees of each other (as in real and synthetic maps);
* cross-modal consistency: the PL a multimodal sample carries should match the PL that the forward
  model computes from the same sample's EBSD, far better than for randomly paired EBSD and PL.
"""

from __future__ import annotations

import numpy as np

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.pl import pl_intensities
from ebsdray.data.symmetry import disorientation_deg


def grain_coherence(quaternions: np.ndarray, threshold_deg: float = 5.0) -> float:
    """Fraction of 4-neighbour pixel pairs with disorientation below ``threshold_deg``.

    Parameters
    ----------
    quaternions : (B, H, W, 4) orientations.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    rows = disorientation_deg(q[:, 1:], q[:, :-1])
    cols = disorientation_deg(q[:, :, 1:], q[:, :, :-1])
    return float(np.concatenate([rows.ravel(), cols.ravel()]).__lt__(threshold_deg).mean())


def cross_modal_error(codec: ChannelCodec, samples: np.ndarray, shift: int = 0) -> float:
    """Relative error between a sample's PL and the PL computed from its own decoded EBSD.

    ``||I_sample - I_forward(EBSD)|| / ||I_forward(EBSD) - mean||`` over all pixels and stage
    angles. With ``shift > 0`` the PL of sample ``i`` is compared with the EBSD of sample
    ``i + shift`` (random pairing baseline).

    Parameters
    ----------
    samples : (B, 3 + C_PL, H, W) multimodal channels.
    """
    x = np.asarray(samples, dtype=np.float64)
    ebsd = np.moveaxis(x[:, :3], 1, -1)
    pl = np.moveaxis(x[:, 3:], 1, -1)
    forward = pl_intensities(codec.decode_ebsd(ebsd), codec.stage_angles_deg)
    carried = codec.decode_pl(np.roll(pl, shift, axis=0))
    return float(np.linalg.norm(carried - forward) / np.linalg.norm(forward - codec.pl_mean))
