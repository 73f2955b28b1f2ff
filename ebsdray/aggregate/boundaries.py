"""Grain boundaries from a reconstruction set: PL edges and EBSD disorientation evidence.

Sobel route (the paper's, and the baseline): the Sobel gradient magnitude over the PL
channels (root-sum-square over channels), min-max normalized to [0, 1] and cut at the elbow of its
sorted values (``kneed``); on the observed PL it is the Sobel baseline.

PL route (:func:`pl_pair_edges`): the step between every pair of face neighbours of the
posterior-mean PL, thinned by non-maximum suppression to one pair per interface and cut at the
elbow of the surviving steps, where features that brightness changes (scratches, illumination)
leave nearly alone agree with a step that persists two pixels (a thin scratch steps back); both
pixels of a kept pair are boundary pixels, as in the ground truth, where a Sobel band is 3-4
pixels wide and misses faint interfaces beside strong ones.

EBSD route: per sample, each pair of face neighbours gets the evidence ``ramp(disorientation)``
(0 below the grain tolerance of 5 degrees, 1 above it, a linear ramp 1 degree wide between); a
pixel's evidence is the largest of its (up to 4) pairs, so both sides of an interface are marked,
as the ground truth is. The mean over K is the probability P that a pixel lies on a boundary; a
strict majority (P > 0.5) makes it one. PL cannot see two grains whose c-axes agree (PL depends on
the c-axis only); their disorientation can. Each sample is first denoised by a 3 x 3 medoid
(:func:`medoid_filter`): without it a single speckled pixel marks a cross of five, and per-pixel
noise of 2 degrees rms per axis puts most interior pairs of one sample beyond 5 degrees.

:func:`ebsdray.aggregate.aggregate` draws the final boundary map from this evidence as the borders
of the grain-consistent segmentation (:mod:`ebsdray.aggregate.grains`); the figures are in
``bench/quality_report.py``'s report.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from kneed import KneeLocator
from scipy import ndimage

from ebsdray.data._arrays import as_numpy
from ebsdray.data.codec import ChannelCodec
from ebsdray.data.symmetry import disorientation_deg

_DERIVATIVE = np.array([-1.0, 0.0, 1.0])
_SMOOTHING = np.array([1.0, 2.0, 1.0])


def sobel_magnitude(images: Any) -> np.ndarray:
    """Sobel gradient magnitude, root-sum-square over channels and both image axes.

    ``scipy.ndimage.sobel`` smooths along every axis but the one it differentiates, which would
    blur across samples and channels of a stack; the two 1-D passes below touch only H and W.

    Parameters
    ----------
    images : (..., C, H, W).

    Returns
    -------
    (..., H, W) float64.
    """
    x = as_numpy(images, np.float64)
    if x.ndim < 3:
        raise ValueError(f"images must be (..., C, H, W); got shape {x.shape}")
    # mode="nearest": no invented edge at the image border.
    gh = ndimage.correlate1d(x, _DERIVATIVE, axis=-2, mode="nearest")
    gh = ndimage.correlate1d(gh, _SMOOTHING, axis=-1, mode="nearest")
    gw = ndimage.correlate1d(x, _DERIVATIVE, axis=-1, mode="nearest")
    gw = ndimage.correlate1d(gw, _SMOOTHING, axis=-2, mode="nearest")
    return np.sqrt((gh * gh + gw * gw).sum(axis=-3))


def edge_maps(pl_samples: Any) -> np.ndarray:
    """Per-sample Sobel magnitude, min-max normalized to [0, 1].

    Parameters
    ----------
    pl_samples : (K, C_PL, H, W) PL channels of K samples.

    Returns
    -------
    (K, H, W) float64; a sample with a constant magnitude (no edges at all) maps to zeros.
    """
    x = as_numpy(pl_samples, np.float64)
    if x.ndim != 4:
        raise ValueError(f"pl_samples must be (K, C_PL, H, W); got shape {x.shape}")
    g = sobel_magnitude(x)
    lo = g.min(axis=(1, 2), keepdims=True)
    span = g.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (g - lo) / np.where(span > 0, span, 1.0), 0.0)


def boundary_confidence(pl_samples: Any) -> np.ndarray:
    """Boundary confidence P (H, W) in [0, 1]: the mean over K of :func:`edge_maps`."""
    return edge_maps(pl_samples).mean(axis=0)


def _odd_smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D curve, extended beyond its ends by point reflection.

    Point (odd) reflection continues a curve's slope past its ends, so a straight stretch stays
    straight; the usual even reflection or edge padding flattens the ends and invents two knees.
    """
    pad = min(int(4 * sigma) + 1, y.size - 1)
    if sigma <= 0 or pad < 1:
        return y
    ext = np.concatenate([2 * y[0] - y[pad:0:-1], y, 2 * y[-1] - y[-2 : -pad - 2 : -1]])
    return ndimage.gaussian_filter1d(ext, sigma, mode="nearest")[pad:-pad]


def elbow_threshold(
    confidence: Any,
    smoothing: float = 0.01,
    max_points: int = 2000,
    sensitivity: float = 1.0,
    min_prominence: float = 0.02,
) -> float:
    """Threshold at the elbow of the sorted boundary confidence.

    P's values sorted in decreasing order form a convex decreasing curve: a steep head of edge
    pixels, then a long flat tail of grain interiors. The curve is subsampled to at most
    ``max_points`` evenly spaced ranks (kneed's cost grows with the length, and the elbow of a
    16k-point curve does not need every point), smoothed with a Gaussian of standard deviation
    ``smoothing`` times its length (stair steps from discrete values would otherwise make spurious
    local knees), and handed to ``kneed.KneeLocator(curve="convex", direction="decreasing")``;
    of its knees, the one farthest from the chord wins. The threshold is the raw P value at the
    knee's rank.

    Parameters
    ----------
    confidence : (H, W) (or any shape) boundary confidence.
    smoothing : Gaussian sigma as a fraction of the (subsampled) curve length.
    max_points : subsampling cap.
    sensitivity : kneed's ``S``.
    min_prominence : a knee counts only if the normalized curve departs from the chord between
        its ends by at least this much (kneed's difference curve); a nearly straight curve has no
        meaningful elbow.

    Returns
    -------
    float. ``inf`` for a constant map (nothing stands out, so no boundaries); the midpoint of the
    value range when there is no knee (a straight curve has no preferred cut).
    """
    v = np.sort(as_numpy(confidence, np.float64).ravel())[::-1]
    if v.size < 3 or v[0] - v[-1] <= 1e-12 * max(abs(v[0]), 1.0):
        return float("inf")
    ranks = np.unique(np.linspace(0, v.size - 1, min(v.size, max_points)).round().astype(np.int64))
    y = _odd_smooth(v[ranks], smoothing * ranks.size)
    kl = KneeLocator(ranks, y, S=sensitivity, curve="convex", direction="decreasing", online=True)
    if not kl.all_knees or np.max(kl.y_difference) < min_prominence:
        return float(0.5 * (v[0] + v[-1]))
    # Of the knees kneed detects, keep the most pronounced one (largest departure from the
    # chord): kneed's first knee can be a flat stretch at the head of the curve.
    at = np.searchsorted(ranks, np.asarray(kl.all_knees))
    return float(v[int(ranks[at[np.argmax(kl.y_difference[at])]])])


def threshold_boundaries(confidence: Any, threshold: float | None = None) -> np.ndarray:
    """(H, W) bool boundary map ``P >= threshold`` (default :func:`elbow_threshold`)."""
    p = as_numpy(confidence, np.float64)
    return p >= (elbow_threshold(p) if threshold is None else threshold)


def pair_steps(images: Any) -> tuple[np.ndarray, np.ndarray]:
    """Step across every face-neighbour pair: the Euclidean norm over channels of the difference.

    Parameters
    ----------
    images : (..., C, H, W).

    Returns
    -------
    (vertical, horizontal): (..., H - 1, W) steps between rows i and i + 1 and (..., H, W - 1)
    between columns j and j + 1, float64.
    """
    x = as_numpy(images, np.float64)
    if x.ndim < 3:
        raise ValueError(f"images must be (..., C, H, W); got shape {x.shape}")
    return tuple(np.sqrt((np.diff(x, axis=a) ** 2).sum(axis=-3)) for a in (-2, -1))


PERSISTENCE = 2  # pixels a PL step must persist (scratches are about 1.5 pixels wide)


def persistent_steps(images: Any, span: int = PERSISTENCE) -> tuple[np.ndarray, np.ndarray]:
    """Steps across face-neighbour pairs that persist ``span`` pixels to either side.

    A pair's step is the least of the steps from the pixel on one side to the pixel on the other
    and to the ``span`` pixels beyond it, and the same from the other side: the step between two
    regions at least ``span + 1`` pixels deep is kept whole, while a line at most ``span`` pixels
    wide (a polishing scratch) steps back within the span and scores near zero. Image borders
    repeat their edge pixels.

    Parameters
    ----------
    images : (..., C, H, W).
    span : how far a step must persist, pixels; 0 gives :func:`pair_steps`.

    Returns
    -------
    (vertical, horizontal) as :func:`pair_steps`.
    """
    x = as_numpy(images, np.float64)
    if x.ndim < 3:
        raise ValueError(f"images must be (..., C, H, W); got shape {x.shape}")
    out = []
    for axis in (-2, -1):
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (span, span)
        p = np.pad(x, pad, mode="edge")
        pairings = [(0, 1)] + [(0, 1 + w) for w in range(1, span + 1)]
        pairings += [(-w, 1) for w in range(1, span + 1)]
        # pixel i + k of the pairs (i, i + 1), i = 0..n - 2, is p[i + span + k] along the axis
        at = {k: np.take(p, np.arange(n - 1) + span + k, axis=axis) for k in range(-span, span + 2)}
        steps = [np.sqrt(((at[b] - at[a]) ** 2).sum(axis=-3)) for a, b in pairings]
        out.append(np.minimum.reduce(steps))
    return out[0], out[1]


def local_maxima(vertical: np.ndarray, horizontal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose step is the largest of the three parallel pairs in a row across them.

    Non-maximum suppression as in Canny's detector, on pairs instead of pixels: a soft edge
    spreads its step over several pairs, of which only the largest is kept, so a boundary marks
    the two pixels either side of the interface, as the ground truth does, instead of a Sobel band
    3-4 pixels wide.

    Parameters
    ----------
    vertical, horizontal : (..., H - 1, W) and (..., H, W - 1) steps (:func:`pair_steps`).

    Returns
    -------
    Two bool arrays of the same shapes.
    """
    out = []
    for d, axis in ((vertical, -2), (horizontal, -1)):
        pad = [(0, 0)] * d.ndim
        pad[axis] = (1, 1)
        p, n = np.pad(d, pad), d.shape[axis]
        before = np.take(p, np.arange(n), axis=axis)
        after = np.take(p, np.arange(2, n + 2), axis=axis)
        out.append((d >= before) & (d >= after))
    return out[0], out[1]


DARK_LEVEL = 2.0  # of the codec's mean training intensity; see shading_invariant


def shading_invariant(pl_channels: Any, codec: ChannelCodec) -> np.ndarray:
    """PL features that a change of brightness alone changes less than the channels.

    Scratches and uneven illumination multiply a pixel's whole intensity stack by one factor;
    grains differ in how the intensity varies with the stage angle (the c-axis sets its phase
    and depth). Each pixel's decoded stack is therefore divided by its mean over the stage
    angles plus a dark level (``DARK_LEVEL`` times the codec's mean training intensity): the
    brighter the pixels, the more their steps measure the stack's shape; the darker, the more
    they stay absolute, so that noise in dark grains is not amplified. A dark level well above
    the mean intensity keeps the features about as robust to noise as the channels (where most
    of the contrast between grains is brightness, dividing it out leaves mostly noise); halving
    an average pixel's brightness then moves its features by 40 % instead of 50 %.

    Parameters
    ----------
    pl_channels : (..., C_PL, H, W) PL channels.
    codec : the channel codec that decodes them.

    Returns
    -------
    (..., R, H, W) float64, R stage angles.
    """
    x = as_numpy(pl_channels, np.float64)
    intensities = codec.decode_pl(np.moveaxis(x, -3, -1))  # (..., H, W, R)
    level = np.maximum(intensities.mean(axis=-1, keepdims=True), 0.0)
    dark = DARK_LEVEL * float(np.mean(codec.pl_mean))
    return np.moveaxis(intensities / (level + dark), -1, -3)


def pl_pair_edges(pl_samples: Any, codec: ChannelCodec) -> dict[str, Any]:
    """PL boundaries from the steps between neighbours of the posterior-mean PL.

    The mean over the K samples is the least noisy image of the section (the posterior mean), so
    the boundary is read from it, in two views: its channels, and their
    :func:`shading_invariant` features with steps that must persist ``PERSISTENCE`` pixels
    (:func:`persistent_steps`). In each view a pair is an edge when it is a
    :func:`local_maxima` (where exactly) and its step exceeds the :func:`elbow_threshold` of the
    local maxima's steps (edges against grain interiors). A boundary pair is an edge in both
    views, and both its pixels are boundary pixels: the channels see every interface at its full
    contrast, and the second view vetoes what is not one (a scratch or an illumination step
    changes the brightness, not the shape of the stack, and a scratch is thin). Each sample is
    cut the same way at the same thresholds for the per-sample maps whose mean is the boundary
    confidence and whose variance is the boundary uncertainty.

    Parameters
    ----------
    pl_samples : (K, C_PL, H, W) PL channels of K samples.
    codec : the channel codec of the samples.

    Returns
    -------
    dict
        ``boundary`` (H, W) bool; ``maps`` (K, H, W) float64 in {0, 1}; ``threshold`` (the
        channels' step threshold; ``inf`` when the mean PL is constant, and then no boundary)
        and ``invariant_threshold`` (the invariant features').
    """
    x = as_numpy(pl_samples, np.float64)
    if x.ndim != 4:
        raise ValueError(f"pl_samples must be (K, C_PL, H, W); got shape {x.shape}")
    boundary, maps, thresholds = np.array(True), np.array(1.0), []
    for view, span in ((x, 0), (shading_invariant(x, codec), PERSISTENCE)):
        v, h = persistent_steps(view.mean(axis=0), span)
        kv, kh = local_maxima(v, h)
        t = elbow_threshold(np.concatenate([v[kv], h[kh]]))
        sv, sh = persistent_steps(view, span)
        sv_max, sh_max = local_maxima(sv, sh)
        boundary = boundary & (pixel_evidence(kv & (v > t), kh & (h > t)) > 0)
        maps = maps * pixel_evidence(sv_max & (sv > t), sh_max & (sh > t))
        thresholds.append(t)
    return {
        "boundary": boundary,
        "maps": maps,
        "threshold": thresholds[0],
        "invariant_threshold": thresholds[1],
    }


# --- EBSD evidence -------------------------------------------------------------------------------
DEFAULT_THRESHOLD_DEG = 5.0  # the field's grain tolerance (DREAM.3D's default)
# The least disorientation at which the samples' own pairs count as boundary evidence. A sample
# is noisy per pixel (about 2 degrees rms per axis before the medoid), so finer evidence is
# noise. On the validation seeds 5101-5104 (K = 8, noise-free EBSD, grain tolerance 2 degrees)
# the 1/16 Chamfer was 0.32 with the samples' evidence at 2 degrees and 0.074 with it at 5
# (0.095 at the 5-degree tolerance).
SAMPLE_EVIDENCE_FLOOR_DEG = 5.0
_MAX_DISORIENTATION_DEG = 93.84  # the largest disorientation under 622


def check_grain_tolerance(tolerance_deg: float) -> float:
    """``tolerance_deg`` as a float, or a ValueError saying what a grain tolerance must be."""
    try:
        t = float(tolerance_deg)
    except (TypeError, ValueError):
        t = float("nan")
    if not (np.isfinite(t) and 0.0 < t < _MAX_DISORIENTATION_DEG):
        raise ValueError(
            f"grain_tolerance_deg must be an angle in (0, {_MAX_DISORIENTATION_DEG}) degrees "
            f"(5 is the field's usual grain tolerance, 2 finds low-angle boundaries in clean "
            f"EBSD); got {tolerance_deg!r}"
        )
    return t


def evidence_threshold(tolerance_deg: float) -> float:
    """The disorientation at which the samples' pairs are read as boundary evidence for a grain
    tolerance ``tolerance_deg``: the tolerance itself, but never below
    :data:`SAMPLE_EVIDENCE_FLOOR_DEG` (the samples' own per-pixel noise)."""
    return max(float(tolerance_deg), SAMPLE_EVIDENCE_FLOOR_DEG)


Window = Literal["square", "weighted"]
_CHUNK_PIXELS = 1 << 16  # pixels per medoid pass: bounds the (9, 9, chunk) angle buffer
# 3 x 3 window positions, the centre first (it wins ties), then face, then diagonal neighbours.
_OFFSETS = ((1, 1), (0, 1), (1, 0), (1, 2), (2, 1), (0, 0), (0, 2), (2, 0), (2, 2))
_WEIGHTS: dict[str, tuple[float, ...]] = {
    "square": (1.0,) * 9,
    # Centre 1.5, face 1, diagonal 0.5: a pixel at a convex grain corner (4 of 9 its own grain)
    # keeps its grain (weight 4 against 3.5), a speckle of up to 2 pixels still loses.
    "weighted": (1.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5),
}


def _medoids_3x3(q: np.ndarray, windows: tuple[str, ...]) -> list[np.ndarray]:
    """Weighted 3 x 3 medoids of (n, H, W, 4) maps, one per window (border pixels repeat)."""
    n, h, w, _ = q.shape
    pad = np.pad(q, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    win = np.stack([pad[:, i : i + h, j : j + w] for i, j in _OFFSETS])  # (9, n, H, W, 4)
    # float32 is plenty to rank members and halves the cost of the 36 angle maps.
    w32 = win.astype(np.float32)
    d = np.zeros((9, 9, n, h, w), np.float32)
    for a in range(8):
        d[a, a + 1 :] = disorientation_deg(w32[a][None], w32[a + 1 :])
        d[a + 1 :, a] = d[a, a + 1 :]
    out = []
    for name in windows:
        cost = np.tensordot(np.asarray(_WEIGHTS[name], np.float32), d, axes=(0, 1))  # (9, n, H, W)
        best = cost.argmin(axis=0)  # ties go to the earlier position: the centre first
        out.append(np.take_along_axis(win, best[None, ..., None], axis=0)[0])
    return out


def medoid_filter(quaternions: Any, window: Window | tuple[Window, ...] = "square") -> Any:
    """Per map, replace every pixel by the medoid of its 3 x 3 window under 622 symmetry.

    The medoid (the member with the least weighted sum of disorientations to the others) is one
    of the window's own orientations: an isolated wrong pixel loses to its neighbours, per-pixel
    noise shrinks, and on each side of a straight interface the majority side wins, so edges stay
    in place. ``"square"`` (equal weights) also clips convex grain corners, which costs nothing in
    Chamfer but opens one-pair gaps between grains; ``"weighted"`` keeps corners.

    Parameters
    ----------
    quaternions : (K, H, W, 4) unit quaternions, K independent maps.
    window : ``"square"``, ``"weighted"`` or a tuple of them (the angle maps are shared).

    Returns
    -------
    (K, H, W, 4) float64, or a tuple of them for a tuple of windows.
    """
    q = as_numpy(quaternions, np.float64)
    if q.ndim != 4 or q.shape[-1] != 4:
        raise ValueError(f"quaternions must be (K, H, W, 4); got shape {q.shape}")
    names = (window,) if isinstance(window, str) else tuple(window)
    if any(w not in _WEIGHTS for w in names):
        raise ValueError(f"window must be among {sorted(_WEIGHTS)}; got {window!r}")
    step = max(1, _CHUNK_PIXELS // max(q.shape[1] * q.shape[2], 1))
    chunks = [_medoids_3x3(q[i : i + step], names) for i in range(0, len(q), step)]
    out = tuple(np.concatenate([c[k] for c in chunks]) for k in range(len(names)))
    return out[0] if isinstance(window, str) else out


def ramp(angle_deg: Any, threshold_deg: float, ramp_deg: float) -> np.ndarray:
    """Linear ramp from 0 at ``threshold - ramp/2`` to 1 at ``threshold + ramp/2`` (a step when
    ``ramp_deg`` is 0; an angle exactly at the threshold then counts as 1)."""
    d = np.asarray(angle_deg, np.float64) - threshold_deg
    if ramp_deg <= 0:
        return (d >= 0).astype(np.float64)
    return np.clip(d / ramp_deg + 0.5, 0.0, 1.0)


def pair_evidence(
    quaternions: Any,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    ramp_deg: float = 1.0,
    window: Window | None = "square",
) -> tuple[np.ndarray, np.ndarray]:
    """Boundary evidence of every face-neighbour pair of K orientation maps.

    Parameters
    ----------
    quaternions : (K, H, W, 4) unit quaternions (decoded samples).
    threshold_deg : grain tolerance; a pair at this disorientation has evidence 0.5.
    ramp_deg : width of the linear ramp around the threshold (0 = a hard step).
    window : :func:`medoid_filter` window applied to each map first; None = raw maps.

    Returns
    -------
    (vertical, horizontal): (K, H - 1, W) evidence between rows i and i + 1, and (K, H, W - 1)
    between columns j and j + 1, float64 in [0, 1].
    """
    q = as_numpy(quaternions, np.float64)
    if q.ndim != 4 or q.shape[-1] != 4:
        raise ValueError(f"quaternions must be (K, H, W, 4); got shape {q.shape}")
    if window is not None:
        q = medoid_filter(q, window)
    vertical = disorientation_deg(q[:, 1:], q[:, :-1])
    horizontal = disorientation_deg(q[:, :, 1:], q[:, :, :-1])
    return ramp(vertical, threshold_deg, ramp_deg), ramp(horizontal, threshold_deg, ramp_deg)


def pixel_evidence(vertical: np.ndarray, horizontal: np.ndarray) -> np.ndarray:
    """(..., H, W) largest evidence of each pixel's pairs, from (..., H - 1, W), (..., H, W - 1)."""
    out = np.zeros((*vertical.shape[:-2], vertical.shape[-2] + 1, vertical.shape[-1]))
    out[..., 1:, :] = vertical
    out[..., :-1, :] = np.maximum(out[..., :-1, :], vertical)
    out[..., :, 1:] = np.maximum(out[..., :, 1:], horizontal)
    out[..., :, :-1] = np.maximum(out[..., :, :-1], horizontal)
    return out


def ebsd_edge_maps(
    quaternions: Any,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    ramp_deg: float = 1.0,
    window: Window | None = "square",
) -> np.ndarray:
    """Per-sample EBSD boundary evidence (K, H, W) in [0, 1] from (K, H, W, 4) orientations.

    A pixel's evidence is the largest :func:`pair_evidence` of its face neighbours; the mean over
    K is the boundary probability (cut at 0.5). Arguments as in :func:`pair_evidence`.
    """
    return pixel_evidence(*pair_evidence(quaternions, threshold_deg, ramp_deg, window))
