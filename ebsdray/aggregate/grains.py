"""Grain-consistent EBSD: segment the reconstruction into grains, one orientation per grain.

1. Grains are the connected components of the face-neighbour pairs whose boundary probability
   (the mean over the K samples of :func:`ebsdray.aggregate.boundaries.pair_evidence`) is at most
   0.5. The probability lives between two pixels, so every pixel is in a grain: nothing has to be
   reassigned from a two-pixel-wide boundary band.
2. Fragments of at most ``min_size`` pixels without an observation join the neighbouring grain
   closest in orientation.
3. A grain whose observed pixels disagree is split along its weakest links
   (:func:`split_by_observations`); fragments that then agree with a neighbour within the
   tolerance join it (:func:`merge_agreeing`).
4. Each grain takes one orientation: the robust mean of its observed EBSD pixels when it has any,
   else the robust mean of the per-pixel posterior mean over its pixels.

5. A pixel between two observations of one grain takes that grain
   (:func:`fill_between_observations`), and keeps it. Borders between grains of different
   c-axes move to where the posterior-mean PL puts them (:func:`refine_borders`): between
   observations the samples place a border only to within the observation spacing, the PL to
   the pixel. A pixel between observations of two grains (:func:`between_grains`) then takes
   the side the observed PL puts it on: the samples' PL leans toward their own border, which
   a low-contrast step in the measurement does not overrule.
6. Unobserved parts of a grain that the PL shows to be another grain become grains of their own
   (:func:`split_by_image`): a grain no observation reached is merged by the samples into a
   neighbour, and moving borders cannot bring it back.
7. A grain no observation holds that the PL does not show either (in contrast, or in the
   residual it saves over its pixels) joins the touching observed grain it matches in the PL
   (:func:`merge_unseen`): the samples alone made it.
8. Borders that observations on both sides place to within a pixel (:func:`observed_borders`)
   are boundaries whether or not the samples mark them.

Why pair probabilities and not a flood fill of the per-pixel mean: the samples honour the observed
pixels, but one pixel away they can be far off, so every observation is an island of the mean,
which a flood fill keeps to itself (``bench/quality_report.py`` measures the result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from ebsdray.aggregate.orientations import align_to_reference, medoid
from ebsdray.data._arrays import as_numpy
from ebsdray.data.rotations import standardize
from ebsdray.data.symmetry import disorientation_deg

_AROUND = ((-1, 0), (1, 0), (0, -1), (0, 1))  # the 4 face neighbours
# Residual scales by which a grain no observation holds must differ in the image (the PL) to be
# a grain of its own; chosen on validation seeds (K = 8, 1/16 grid).
# A grain that only the samples make (:func:`merge_unseen`) must differ from every touching
# observed grain by CONTRAST (seeds 5101-5104), unless it saves MERGE_GAIN of squared residual
# (the gain of split_by_image): contrast is a per-pixel test, and a grain the PL shows over many
# pixels at a contrast under CONTRAST is still there. Chosen among 200, 300, 500, 800, 1200 and
# none on seeds 5101-5108 by the rule that chose BRIGHTNESS_CONTRAST: 300 gave a clean 1/16
# Chamfer of 0.1153 against 0.1174 without it (scratches 0.740 against 0.743, PL noise 0.2:
# 0.316 against 0.326, clean 1/4: 0.0619 both); at 200 strips of neighbours stayed (1/4 0.0629).
# Rechecked after the measured PL came to decide between observations of two grains (1/4 only):
# the same choice (clean 1/4 0.0598 at 300 to inf, 0.0609 at 200).
CONTRAST = 8.0
MERGE_GAIN = 300.0
# A grain that only the PL shows (:func:`split_by_image`) must differ from every mix of its grain
# with a touching one by SPLIT_CONTRAST, and from its grain at any brightness by
# BRIGHTNESS_CONTRAST: the posterior-mean PL keeps a scratch as a softened brightness step, and
# a low-contrast grain is a step in the shape of the intensity stack. On seeds 5101-5104 both at
# 8 gave a 1/16 Chamfer of 0.0873 (scratches 0.927, PL noise 0.2: 0.190); at 2 and 6, 0.0715
# (0.916, 0.188); at 2 and 2, 0.071 but 1.00 under scratches, whose pieces split off as grains.
# The brightness threshold was then chosen among 3, 4, 5, 6 and 8 on seeds 5101-5108 (16
# sections): 4 gave the least clean 1/16 Chamfer, 0.1174 against 0.1276 at 6 (scratches 0.743
# against 0.744, PL noise 0.2: 0.326 against 0.325, clean 1/4: 0.0619 against 0.0641); 3 let
# scratch pieces through (0.813 under scratches).
SPLIT_CONTRAST = 2.0
BRIGHTNESS_CONTRAST = 4.0


def _label_medians(labels: np.ndarray, image: np.ndarray, select: np.ndarray, n: int) -> np.ndarray:
    """(n, C) per-label, per-channel median of ``image`` (C, H, W) over the ``select`` pixels of
    each label (all its pixels for a label with none selected; zeros for absent labels)."""
    lab = labels.ravel()
    has = np.bincount(lab[select.ravel()], minlength=n) > 0
    use = select.ravel() | ~has[lab]
    lab = lab[use]
    count = np.bincount(lab, minlength=n)
    start = np.cumsum(count) - count
    present = count > 0
    out = np.zeros((n, image.shape[0]))
    for c, channel in enumerate(image):
        v = channel.ravel()[use]
        ordered = v[np.lexsort((v, lab))]
        lo = ordered[start[present] + (count[present] - 1) // 2]
        hi = ordered[start[present] + count[present] // 2]
        out[present, c] = 0.5 * (lo + hi)
    return out


def _pairs(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (a, b) of all vertical, then all horizontal face-neighbour pairs."""
    index = np.arange(shape[0] * shape[1]).reshape(shape)
    a = np.concatenate([index[:-1].ravel(), index[:, :-1].ravel()])
    b = np.concatenate([index[1:].ravel(), index[:, 1:].ravel()])
    return a, b


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component (0..) of each of ``n`` nodes joined by edges (a, b)."""
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _touching_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (la, lb) across every face-neighbour pair, in both directions."""
    a, b = _pairs(labels.shape)
    la, lb = labels.ravel()[a], labels.ravel()[b]
    return np.concatenate([la, lb]), np.concatenate([lb, la])


def _closest(la: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Index of the cheapest candidate pair of each distinct label in ``la``, by ``cost``."""
    order = np.lexsort((cost, la))
    return order[np.r_[True, la[order][1:] != la[order][:-1]]]


def renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 1..N in raster order of each label's first pixel, (H, W) int32."""
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return (rank[inverse] + 1).reshape(labels.shape).astype(np.int32)


def segment_pairs(vertical: Any, horizontal: Any, cut: float = 0.5) -> np.ndarray:
    """Grains as connected components of the pairs with boundary probability at most ``cut``.

    Parameters
    ----------
    vertical : (H - 1, W) probability between rows i and i + 1.
    horizontal : (H, W - 1) probability between columns j and j + 1.
    cut : pairs above it (a strict majority of the samples at 0.5) separate grains.

    Returns
    -------
    (H, W) int32 labels 1..N, numbered in raster order of their first pixel.
    """
    v, h = as_numpy(vertical, np.float64), as_numpy(horizontal, np.float64)
    shape = (h.shape[0], v.shape[1])
    if v.shape != (shape[0] - 1, shape[1]) or h.shape != (shape[0], shape[1] - 1):
        raise ValueError(f"vertical {v.shape} and horizontal {h.shape} do not fit one image")
    a, b = _pairs(shape)
    joined = np.concatenate([v.ravel(), h.ravel()]) <= cut
    return renumber(_components(shape[0] * shape[1], a[joined], b[joined]).reshape(shape))


def grain_means(
    labels: np.ndarray,
    quaternions: np.ndarray,
    select: np.ndarray | None = None,
    trim_deg: float = 10.0,
    members: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust mean orientation of each grain's (selected) pixels, all grains at once.

    Per grain, the :func:`~ebsdray.aggregate.orientations.medoid` of up to ``members`` evenly
    spaced pixels is the reference (the medoid of all n pixels would cost n^2 / 2 angles); pixels
    farther than ``trim_deg`` from it (speckle, a pixel of the neighbour grain) are left out, the
    rest are aligned to it under 622 symmetry and averaged, twice.

    Parameters
    ----------
    labels : (H, W) int labels 0..N.
    quaternions : (H, W, 4) unit quaternions.
    select : optional (H, W) bool, the pixels that count (default all).
    trim_deg : outlier cut around the reference.
    members : size of the subsample the reference is the medoid of.

    Returns
    -------
    means : (N + 1, 4) float64, identity for labels without selected pixels.
    present : (N + 1,) bool, labels with selected pixels.
    """
    lab = np.asarray(labels).ravel()
    q = np.asarray(quaternions, np.float64).reshape(-1, 4)
    if select is not None:
        keep = np.asarray(select, bool).ravel()
        lab, q = lab[keep], q[keep]
    n = int(np.asarray(labels).max()) + 1
    means = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (n, 1))
    counts = np.bincount(lab, minlength=n)
    present = counts > 0
    if not present.any():
        return means, present
    order = np.argsort(lab, kind="stable")
    starts = np.cumsum(counts) - counts
    g = np.flatnonzero(present)
    pick = starts[g, None] + (np.arange(members)[None] * counts[g, None]) // members
    ref = np.tile(means[:1], (n, 1))
    ref[g] = medoid(np.swapaxes(q[order[pick]], 0, 1))  # (members, G, 4) -> (G, 4)
    for _ in range(2):
        aligned = align_to_reference(q, ref[lab])
        w = disorientation_deg(q, ref[lab]) <= trim_deg  # the reference itself always stays
        s = np.stack([np.bincount(lab, aligned[:, c] * w, minlength=n) for c in range(4)], -1)
        norm = np.linalg.norm(s, axis=-1, keepdims=True)
        ref = np.where(norm > 1e-12, s / np.maximum(norm, 1e-300), ref)
    means[present] = standardize(ref[present])
    return means, present


def merge_fragments(
    labels: np.ndarray,
    quaternions: np.ndarray,
    keep: np.ndarray | None = None,
    min_size: int = 3,
) -> np.ndarray:
    """Join grains of at most ``min_size`` pixels to the neighbouring grain closest in orientation.

    Only grains larger than ``min_size`` take fragments in: where the samples agree on no grain
    structure at all (every pair a boundary, e.g. per-pixel noise far above the tolerance), the
    fragments stay single pixels, i.e. the per-pixel mean, instead of snowballing into blobs
    averaged across true boundaries.

    Parameters
    ----------
    labels : (H, W) int labels 1..N.
    quaternions : (H, W, 4) per-pixel orientations (fragments and grains compare by their
        :func:`grain_means`).
    keep : optional (H, W) bool; a fragment holding any of these pixels (an observation) stays.
    min_size : largest fragment size that is merged.

    Returns
    -------
    (H, W) int32 labels 1..M, renumbered in raster order.
    """
    labels = renumber(np.asarray(labels))
    n = int(labels.max()) + 1
    small = np.bincount(labels.ravel(), minlength=n) <= min_size
    small[0] = False
    movable = small if keep is None else small & (np.bincount(labels[keep], minlength=n) == 0)
    la, lb = _touching_pairs(labels)
    edge = movable[la] & ~small[lb]
    la, lb = la[edge], lb[edge]
    if la.size == 0:
        return labels
    means, _ = grain_means(labels, quaternions)
    first = _closest(la, disorientation_deg(means[la], means[lb]))  # per fragment
    target = np.arange(n)
    target[la[first]] = lb[first]
    return renumber(target[labels])


def merge_agreeing(
    labels: np.ndarray, grain_q: np.ndarray, tolerance_deg: float, max_size: int
) -> np.ndarray:
    """Join fragments of at most ``max_size`` pixels to a neighbouring grain whose orientation
    differs by less than ``tolerance_deg`` (larger grains the samples separated stay apart: two
    grains of a macrozone may be closer than the tolerance).

    Parameters
    ----------
    labels : (H, W) int labels 1..N.
    grain_q : (N + 1, 4) orientation of each grain (row 0 unused).

    Returns
    -------
    (H, W) int32 labels 1..M, renumbered in raster order.
    """
    n = int(labels.max()) + 1
    a, b = _pairs(labels.shape)
    la, lb = labels.ravel()[a], labels.ravel()[b]
    small = np.bincount(labels.ravel(), minlength=n) <= max_size
    cross = (la != lb) & (la > 0) & (lb > 0) & (small[la] | small[lb])
    la, lb = la[cross], lb[cross]
    close = disorientation_deg(grain_q[la], grain_q[lb]) < tolerance_deg
    component = _components(n, la[close], lb[close])
    return renumber(np.where(labels > 0, component[labels] + 1, 0))


def split_by_observations(
    labels: np.ndarray,
    vertical: Any,
    horizontal: Any,
    q_observed: Any,
    observed: Any,
    tolerance_deg: float = 5.0,
    step: float = 0.01,
) -> np.ndarray:
    """Split grains whose observed pixels disagree, along their weakest links.

    Every observed pixel seeds a region; each pixel joins the seed it reaches at the least cost
    within its grain, a path costing the sum of its pairs' boundary probabilities plus ``step``
    per pair (so distance breaks ties). Neighbouring regions whose seeds agree within
    ``tolerance_deg`` join again. A grain the samples merged across a weak stretch of boundary is
    cut where the boundary evidence is, and one whose observations all agree stays whole.

    Parameters
    ----------
    labels : (H, W) int grain labels.
    vertical, horizontal : (H - 1, W) and (H, W - 1) pair boundary probabilities.
    q_observed : (H, W, 4) observed orientations (read at ``observed`` pixels).
    observed : (H, W) bool.
    tolerance_deg : observations closer than this are one grain.
    step : cost per pair.

    Returns
    -------
    (H, W) int32 labels 1..N in raster order.
    """
    labels = np.asarray(labels)
    obs = np.flatnonzero(np.asarray(observed, bool).ravel())
    if obs.size < 2:
        return renumber(labels)
    a, b = _pairs(labels.shape)
    flat = labels.ravel()
    p = np.concatenate(
        [as_numpy(vertical, np.float64).ravel(), as_numpy(horizontal, np.float64).ravel()]
    )
    inside = flat[a] == flat[b]
    n = flat.size
    graph = coo_matrix((p[inside] + step, (a[inside], b[inside])), shape=(n, n)).tocsr()
    _, _, source = dijkstra(
        graph, directed=False, indices=obs, min_only=True, return_predecessors=True
    )
    region = np.where(source >= 0, source, -1 - flat)  # unreached (no observation): the grain
    # Regions meet across pairs inside one grain; they join when their seeds agree.
    meet = inside & (region[a] != region[b]) & (source[a] >= 0) & (source[b] >= 0)
    sa, sb = source[a[meet]], source[b[meet]]
    q = np.asarray(q_observed, np.float64).reshape(-1, 4)
    agree = disorientation_deg(q[sa], q[sb]) < tolerance_deg
    nodes = np.unique(region, return_inverse=True)[1]
    comp = _components(int(nodes.max()) + 1, nodes[a[meet][agree]], nodes[b[meet][agree]])
    return renumber(comp[nodes].reshape(labels.shape))


def grain_consistent(
    vertical: Any,
    horizontal: Any,
    q_mean: Any,
    q_observed: Any = None,
    observed: Any = None,
    *,
    min_size: int = 3,
    tolerance_deg: float = 5.0,
    trim_deg: float = 10.0,
) -> dict[str, np.ndarray]:
    """Segment, then one orientation per grain: observed EBSD where a grain has some, else the
    posterior mean.

    Steps: :func:`segment_pairs` (pairs at probability 0.5 or less join), :func:`merge_fragments`
    (unobserved fragments up to ``min_size`` pixels), :func:`split_by_observations`,
    :func:`merge_agreeing`, then
    :func:`grain_means` of the observations in each grain, or of ``q_mean`` where there are none.

    Parameters
    ----------
    vertical, horizontal : (H - 1, W) and (H, W - 1) pair boundary probabilities (the mean over K
        of :func:`ebsdray.aggregate.boundaries.pair_evidence`).
    q_mean : (H, W, 4) per-pixel posterior mean orientations.
    q_observed : optional (H, W, 4) observed orientations (only ``observed`` pixels are read).
    observed : optional (H, W) bool, the observed EBSD pixels.
    min_size : largest fragment that is merged (0: none).
    tolerance_deg : observations closer than this belong to one grain.
    trim_deg : outlier cut of :func:`grain_means`.

    Returns
    -------
    dict
        ``quaternions`` (H, W, 4) float64, constant per grain; ``labels`` (H, W) int32 1..N;
        ``grain_quaternions`` (N + 1, 4) (row 0 unused); ``from_observation`` (N + 1,) bool, the
        grains whose orientation comes from observed pixels.
    """
    qm = as_numpy(q_mean, np.float64)
    obs = None if observed is None or q_observed is None else as_numpy(observed, bool)
    if obs is not None and not obs.any():
        obs = None
    labels = segment_pairs(vertical, horizontal)
    if min_size > 0:
        labels = merge_fragments(labels, qm, obs, min_size)

    def orientations(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grain_q, _ = grain_means(labels, qm, trim_deg=trim_deg)
        if obs is None:
            return grain_q, np.zeros(grain_q.shape[0], bool)
        q_from_obs, from_obs = grain_means(labels, q_obs, obs, trim_deg)
        return np.where(from_obs[:, None], q_from_obs, grain_q), from_obs

    if obs is not None:
        q_obs = as_numpy(q_observed, np.float64)
        labels = split_by_observations(labels, vertical, horizontal, q_obs, obs, tolerance_deg)
        # Fragments whose grain orientation agrees with a neighbour's within the tolerance are
        # that grain by the segmentation's own definition (e.g. a speckle the samples made at
        # an observed pixel, kept as its own fragment because of that observation).
        labels = merge_agreeing(labels, orientations(labels)[0], tolerance_deg, min_size)
    grain_q, from_obs = orientations(labels)
    return {
        "quaternions": grain_q[labels],
        "labels": labels,
        "grain_quaternions": grain_q,
        "from_observation": from_obs,
    }


def borders_where(
    labels: np.ndarray, keep: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Border pixels of the face-neighbour pairs of different labels that ``keep`` selects.

    Parameters
    ----------
    labels : (H, W) int labels.
    keep : maps the flat indices (a, b) of the pairs across a border, two (P,) int arrays, to
        a (P,) bool selection.

    Returns
    -------
    (H, W) bool, both pixels of each selected pair marked (as
    :func:`ebsdray.metrics.grain_boundaries` marks both sides of a border).
    """
    flat = np.asarray(labels).ravel()
    a, b = _pairs(labels.shape)
    cross = flat[a] != flat[b]
    a, b = a[cross], b[cross]
    chosen = keep(a, b)
    out = np.zeros(flat.size, bool)
    out[a[chosen]] = out[b[chosen]] = True
    return out.reshape(labels.shape)


def observed_borders(
    labels: np.ndarray,
    q_observed: Any,
    observed: Any,
    tolerance_deg: float = 5.0,
) -> np.ndarray:
    """Border pixels that the observations alone place: between two grains whose observed
    orientations differ by more than ``tolerance_deg``, where each side's pixel has an observation
    of its own grain in its 3 x 3 neighbourhood.

    Such a border needs no support from the samples: two observations at most two pixels apart
    disagree, so a border lies between them to within a pixel. The samples may still not mark it,
    since they can spread a low-angle step over the pixel between two observations in two steps
    below the tolerance each.

    Parameters
    ----------
    labels : (H, W) int grain labels.
    q_observed : (H, W, 4) observed orientations (read at ``observed`` pixels).
    observed : (H, W) bool, the observed pixels.
    tolerance_deg : the grain tolerance.

    Returns
    -------
    (H, W) bool, both sides of each such border marked.
    """
    lab = np.asarray(labels)
    obs = as_numpy(observed, bool)
    if not obs.any():
        return np.zeros(lab.shape, bool)
    grain_q, has = grain_means(lab, as_numpy(q_observed, np.float64), obs)
    # an observation of the pixel's own grain in its 3 x 3
    near = (_observed_around(lab, obs) == lab).any(axis=(0, 1))
    flat, near = lab.ravel(), near.ravel()

    def disagree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = near[a] & near[b] & has[flat[a]] & has[flat[b]]
        out[out] = disorientation_deg(grain_q[flat[a[out]]], grain_q[flat[b[out]]]) > tolerance_deg
        return out

    return borders_where(lab, disagree)


def _observed_around(labels: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(3, 3, H, W) int64: at [1 + di, 1 + dj] the label of each pixel's neighbour (di, dj) where
    that neighbour is observed, -1 where it is not or lies outside (labels are non-negative)."""
    h, w = labels.shape
    seen = np.pad(np.where(observed, labels.astype(np.int64), -1), 1, constant_values=-1)
    return np.stack([[seen[i : i + h, j : j + w] for j in range(3)] for i in range(3)])


# Opposite neighbours in a pixel's 3 x 3: a pixel between two of them lies on the segment that
# joins them.
_OPPOSITE = (((-1, 0), (1, 0)), ((0, -1), (0, 1)), ((-1, -1), (1, 1)), ((-1, 1), (1, -1)))


def fill_between_observations(labels: np.ndarray, observed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Give each unobserved pixel that lies between two observations of one grain that grain.

    Two observations of grain A on opposite sides of a pixel (up and down, left and right, or a
    diagonal pair) put it on the segment joining them; another grain there would be thinner
    than a pixel across that line. Neither the samples nor the PL may overrule them: where two
    grains share a c-axis the PL cannot tell them apart, and a grain that merged two sub-tolerance
    grains of slightly different PL can lose a part to a neighbour of the same c-axis, leaving
    only its observed pixels (validation 5102, 1/4 grid: a 25-degree checkerboard). On a 1/4 grid
    every unobserved pixel has an opposite pair; on a 1/16 grid none has. A pixel between pairs of
    different grains (a corner) is left as it is.

    Parameters
    ----------
    labels : (H, W) int grain labels (observed pixels carry their grain's).
    observed : (H, W) bool, the observed pixels.

    Returns
    -------
    labels : (H, W) labels of the input's dtype, a subset of the input's.
    placed : (H, W) bool, the unobserved pixels between two observations of one grain (hold them
        fixed with the observations in later steps).
    """
    lab = np.asarray(labels)
    obs = as_numpy(observed, bool)
    around = _observed_around(lab, obs)
    grain = np.full(lab.shape, -1, np.int64)
    corner = np.zeros(lab.shape, bool)
    for (i0, j0), (i1, j1) in _OPPOSITE:
        a, b = around[1 + i0, 1 + j0], around[1 + i1, 1 + j1]
        pair = (a == b) & (a >= 0)
        corner |= pair & (grain >= 0) & (grain != a)
        grain = np.where(pair & (grain < 0), a, grain)
    placed = (grain >= 0) & ~corner & ~obs
    return np.where(placed, grain, lab).astype(lab.dtype), placed


def between_grains(labels: np.ndarray, observed: Any) -> np.ndarray:
    """The unobserved pixels that have observations of two or more grains among their 8
    neighbours: on a 1/4 grid, the pixels a border between observations of two grains can run
    through; on a 1/16 grid, none (no pixel has two observations among its neighbours).

    Parameters
    ----------
    labels : (H, W) non-negative int grain labels (observed pixels carry their grain's).
    observed : (H, W) bool, the observed pixels.

    Returns
    -------
    (H, W) bool.
    """
    obs = as_numpy(observed, bool)
    around = _observed_around(np.asarray(labels), obs).reshape(9, *obs.shape)
    big = around.max(axis=0)  # -1 where no neighbour is observed
    small = np.where(around >= 0, around, big).min(axis=0)
    return ~obs & (small != big)


def refine_borders(
    labels: np.ndarray,
    image: Any,
    fixed: Any = None,
    *,
    smoothness: float = 1.0,
    margin: float = 1.0,
    iterations: int = 5,
) -> np.ndarray:
    """Move grain borders to where an image of the section (the PL) puts them.

    The samples' EBSD places a border only as well as the observations between it allow (on a
    1/16 grid they are 4 pixels apart); the PL sees the border itself wherever the two grains'
    c-axes differ. Iterated conditional modes (Besag 1986) on a Potts model: every pixel takes,
    of its own and its 4 neighbours' labels, the one minimising

        |image(x) - mean(label)|^2 / s^2 + smoothness * (number of 4-neighbours with another label)

    where ``mean(label)`` is the grain's median over its interior (non-border) pixels (robust to
    the pixels of a neighbour the grain wrongly holds) and ``s^2`` the
    median squared residual of interior pixels (so the data term is scale-free). A pixel moves at
    most one pixel per iteration, and only to a label cheaper than its own by ``margin``: between
    grains the image cannot tell apart (one c-axis) the costs differ by noise alone, and the
    border stays where the EBSD put it instead of wandering.

    Parameters
    ----------
    labels : (H, W) int grain labels (kept as they are: callers may index per-grain arrays).
    image : (C, H, W) image, e.g. the posterior-mean PL channels.
    fixed : optional (H, W) bool, pixels whose label never changes (observed EBSD pixels).
    smoothness : Potts weight.
    margin : the least cost (in units of ``s^2``) a move must save.
    iterations : most passes (stops earlier when nothing moves).

    Returns
    -------
    (H, W) labels of the same dtype, a subset of the input's.
    """
    lab = np.array(labels, copy=True)
    img = _checked_image(image, lab.shape)
    keep = None if fixed is None else as_numpy(fixed, bool)
    for _ in range(iterations):
        fit = _ImageFit.of(lab, img)
        mean, around, scale = fit.mean, fit.around, fit.scale
        best, best_cost = lab, None
        for candidate in (lab, *around):  # own label first: it wins ties
            data = ((img - np.moveaxis(mean[candidate], -1, 0)) ** 2).sum(axis=0) / scale
            cost = data + smoothness * (around != candidate).sum(axis=0)
            if best_cost is None:
                best_cost = cost - margin
                continue
            better = cost < best_cost
            best = np.where(better, candidate, best)
            best_cost = np.where(better, cost, best_cost)
        if keep is not None:
            best = np.where(keep, lab, best)
        if np.array_equal(best, lab):
            break
        lab = best
    return lab


def _checked_image(image: Any, shape: tuple[int, int]) -> np.ndarray:
    img = as_numpy(image, np.float64)
    if img.ndim != 3 or img.shape[1:] != shape:
        raise ValueError(f"image must be (C, {shape[0]}, {shape[1]}); got {img.shape}")
    return img


@dataclass(frozen=True)
class _ImageFit:
    """A piecewise-constant fit of an image to grain labels: each grain's median over its
    interior pixels (robust to the pixels of a neighbour the grain wrongly holds) and the scale
    of the residual, the median squared residual of interior pixels (so costs are scale-free)."""

    mean: np.ndarray  # (N + 1, C) per-label medians
    residual: np.ndarray  # (H, W) squared residual to the own grain's median, summed over C
    around: np.ndarray  # (4, H, W) the 4 face neighbours' labels (edge-padded)
    scale: float

    @classmethod
    def of(cls, lab: np.ndarray, img: np.ndarray) -> _ImageFit:
        h, w = lab.shape
        padded = np.pad(lab, 1, mode="edge")
        around = np.stack([padded[1 + i : 1 + i + h, 1 + j : 1 + j + w] for i, j in _AROUND])
        interior = (around == lab).all(axis=0)
        mean = _label_medians(lab, img, interior, int(lab.max()) + 1)
        residual = ((img - np.moveaxis(mean[lab], -1, 0)) ** 2).sum(axis=0)
        scale = max(float(np.median(residual[interior])) if interior.any() else 0.0, 1e-12)
        return cls(mean, residual, around, scale)


def split_by_image(
    labels: np.ndarray,
    image: Any,
    fixed: Any = None,
    *,
    dark: Any = None,
    candidate: float = 3.0,
    contrast: float = SPLIT_CONTRAST,
    brightness_contrast: float = BRIGHTNESS_CONTRAST,
    gain: float = 50.0,
) -> np.ndarray:
    """Split off the parts of grains that an image of the section (the PL) shows to differ.

    A grain no observation reaches (on a 1/16 grid, any grain narrower than the 4-pixel spacing)
    is merged by the samples into a neighbour; moving borders (:func:`refine_borders`) cannot
    bring it back, but the PL still shows it wherever its c-axis differs. Candidates are the
    connected unobserved pixels of one grain whose squared residual to the grain's median,
    averaged over 3 x 3 and in units of the residual scale (see :func:`refine_borders`), exceeds
    ``candidate``; :func:`refine_borders` then shapes them inside their grain. A candidate
    stays a grain of its own only if its median is at least ``contrast`` residual scales from
    its grain's and from every mix of its grain's with a touching grain's (a border the samples
    disagree on is blurred into such a mix; a grain of another c-axis is tens of scales off any),
    and, given ``dark``, at least ``brightness_contrast`` from its grain's at any brightness
    between 0 and 2 times (a scratch or uneven light scales a pixel's whole intensity stack; for
    an image that is affine in the intensities, as the PL channels are, such a scaling is a mix
    with the image of no light), and the squared residual it saves, less one per new border
    pair, is at least ``gain``.

    Parameters
    ----------
    labels : (H, W) int grain labels.
    image : (C, H, W) image, e.g. the posterior-mean PL channels.
    fixed : optional (H, W) bool, observed pixels: they stay in their grain.
    dark : optional (C,) the image of no light (for the PL channels ``codec.encode_pl`` of a zero
        stack).
    candidate, contrast, brightness_contrast, gain : the thresholds above, in units of the
        residual scale.

    Returns
    -------
    (H, W) labels of the input's dtype: the input's, with each new grain numbered from
    ``labels.max() + 1`` on.
    """
    lab = np.asarray(labels)
    img = _checked_image(image, lab.shape)
    keep = np.zeros(lab.shape, bool) if fixed is None else as_numpy(fixed, bool)
    black = None if dark is None else as_numpy(dark, np.float64).reshape(1, img.shape[0])
    fit = _ImageFit.of(lab, img)
    scale = fit.scale  # the noise of the image as the grains left it
    root = np.sqrt(scale)
    odd = (ndimage.uniform_filter(fit.residual / scale, 3, mode="nearest") > candidate) & ~keep
    pieces, count = ndimage.label(odd)  # 4-connected
    if count == 0:
        return lab.copy()
    start = int(lab.max()) + 1  # the first new label
    # a candidate is one connected piece within one grain
    _, first, piece = np.unique(
        pieces[odd].astype(np.int64) * start + lab[odd], return_index=True, return_inverse=True
    )
    parent = lab[odd][first]
    proposed = lab.copy()
    proposed[odd] = start + piece
    # only the candidates' grains are reshaped
    proposed = refine_borders(proposed, img, fixed=keep | ~np.isin(lab, parent))
    fit = _ImageFit.of(proposed, img)
    out = proposed.copy()
    target = np.arange(start + parent.size)
    target[start:] = parent
    gains = _saved(proposed, img, fit.mean, target, scale)
    ones = np.where(proposed >= start, proposed - start + 1, 0)
    for k, box in enumerate(ndimage.find_objects(ones, max_label=parent.size)):
        if box is None:  # refined away
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # with its ring
        here, g = proposed[box], parent[k]
        inside = here == start + k
        value, own = fit.mean[start + k], fit.mean[g]
        distinct = _unmixed(value, own, fit.mean[_touching(here, inside)]) >= contrast * root
        if black is not None:
            distinct &= _unmixed(value, own, black, -1.0) >= brightness_contrast * root
        if not (distinct and gains[start + k] >= gain):
            out[box][inside] = g
    # renumber the kept new grains start, start + 1, ... so callers can extend per-grain arrays
    new = np.unique(out[out >= start])
    remap = np.arange(int(out.max()) + 1)
    remap[new] = start + np.arange(new.size)
    return remap[out].astype(lab.dtype)


def merge_unseen(
    labels: np.ndarray,
    image: Any,
    observed: Any,
    *,
    contrast: float = CONTRAST,
    gain: float = MERGE_GAIN,
) -> np.ndarray:
    """Join each grain that holds no observation to the touching observed grain closest to it in
    the image (the PL), when they differ by less than ``contrast`` residual scales and the grain
    would save less than ``gain`` of squared residual by standing apart.

    Such a grain exists only in the samples, which one pixel from an observation can be tens of
    degrees off; where the PL does not show it either, it is most often a strip of a neighbour
    (validation, 1/4 grid: most of them overlapped no true grain by half). A grain the PL shows
    stays, as in :func:`split_by_image`; an unobserved grain of its neighbour's c-axis cannot be
    told from it and joins it. (Unlike :func:`split_by_image`, no neighbour at another
    brightness is tried: on validation that joined true grains of other c-axes.)

    Parameters
    ----------
    labels : (H, W) int grain labels.
    image : (C, H, W) image, e.g. the posterior-mean PL channels.
    observed : (H, W) bool, the observed pixels.
    contrast : the least difference, in units of the residual scale (see :func:`refine_borders`).
    gain : the squared residual, in units of the residual scale, less one per border pair, that a
        grain under ``contrast`` must save by standing apart to stay: the PL shows a wide grain
        of low contrast as surely as a small one of high contrast (``np.inf``: contrast alone).

    Returns
    -------
    (H, W) labels of the input's dtype, a subset of the input's.
    """
    lab = np.asarray(labels)
    img = _checked_image(image, lab.shape)
    n = int(lab.max()) + 1
    seen = np.bincount(lab[as_numpy(observed, bool)], minlength=n) > 0
    la, lb = _touching_pairs(lab)
    edge = ~seen[la] & seen[lb]
    la, lb = np.unique(np.stack([la[edge], lb[edge]]), axis=1)  # (unseen, seen) grain pairs
    if la.size == 0:
        return lab.copy()
    fit = _ImageFit.of(lab, img)
    distance = np.linalg.norm(fit.mean[la] - fit.mean[lb], axis=-1)
    first = _closest(la, distance)  # per unseen grain
    join = first[distance[first] < contrast * np.sqrt(fit.scale)]
    target = np.arange(n)
    target[la[join]] = lb[join]
    # a grain the PL shows over many pixels stays, however low its contrast
    stays = la[join][_saved(lab, img, fit.mean, target, fit.scale)[la[join]] >= gain]
    target[stays] = stays
    return target[lab].astype(lab.dtype)


def _saved(
    lab: np.ndarray, img: np.ndarray, mean: np.ndarray, target: np.ndarray, scale: float
) -> np.ndarray:
    """(N,) per label: the squared residual of ``img`` (C, H, W), in units of ``scale``, that the
    grain saves by standing apart from the grain ``target`` (N,) would join it to (``mean``
    (N, C) the grains' values), less one per border pair of it; 0 less its border pairs for a
    grain ``target`` leaves alone."""
    moved = target[lab] != lab
    own = lab[moved]
    values = img[:, moved]
    there = ((values - mean[target[own]].T) ** 2).sum(axis=0)
    here = ((values - mean[own].T) ** 2).sum(axis=0)
    n = target.size
    saved = np.bincount(own, there - here, minlength=n) / scale
    la, lb = _touching_pairs(lab)
    return saved - np.bincount(la[la != lb], minlength=n)


def _touching(labels: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The labels of the pixels face-adjacent to the region ``inside`` (H, W) bool."""
    ring = ndimage.binary_dilation(inside) & ~inside
    return np.unique(labels[ring])


def _unmixed(
    value: np.ndarray, own: np.ndarray, neighbours: np.ndarray, least: float = 0.0
) -> float:
    """Distance from ``value`` (C,) to the nearest mix ``(1 - t) own + t other`` of ``own`` (C,)
    with one of the ``neighbours`` (M, C) (``own`` alone included), ``least <= t <= 1``: a
    border's blur is such a mix, a grain of another c-axis is not."""
    ends = np.concatenate([own[None], neighbours])
    d = ends - own
    t = np.clip(((value - own) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-300), least, 1.0)
    return float(np.linalg.norm(own + t[:, None] * d - value, axis=-1).min())
