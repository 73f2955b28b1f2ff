"""Synthetic alpha-Ti polycrystals: 3-D Laguerre-Voronoi grains with lognormal sizes and textures.

The stand-in for DREAM.3D, numpy + scipy only::

    vol = synthetic_volume((64, 256, 256), seed=3, texture={"kind": "macrozones"})
    vol.grain_ids      # (64, 256, 256) int32, 1..G
    vol.quaternions    # (64, 256, 256, 4) float32, unit, q0 >= 0
    vol.grain_quaternions[g]  # nominal orientation of grain g

Recipe: lognormal equivalent diameters; seeds placed largest first by a best-candidate rule (each
new seed goes where it overlaps its neighbours least, relative to their sizes) so cells follow
the drawn sizes; power diagram with weights r^2 (nearest seed in 4-D after lifting each seed by
sqrt(w_max - w_i)) in a metric that is stretched and tilted for elongated grains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply, standardize
from ebsdray.data.texture import plain_config, sample_orientations
from ebsdray.data.volume import Volume

_CANDIDATES = 12  # best-candidate trials per seed: more = more regular packing
_NEIGHBOURS = 8  # placed seeds scored per trial


def _metric(stretch: Sequence[float], tilt_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Map ``A`` from voxel coordinates (d, h, w) to a space where grains are equiaxed, and the
    grain shape matrix ``R diag(s)`` (s = stretch normalized to unit volume)."""
    s = np.asarray(stretch, dtype=np.float64)
    if s.shape != (3,) or np.any(s <= 0):
        raise ValueError(f"stretch must be 3 positive factors (D, H, W); got {stretch!r}")
    s = s / np.prod(s) ** (1 / 3)  # keep grain volume, so grain_size stays the equivalent diameter
    t = math.radians(tilt_deg)
    # Rotation about the H axis: a grain axis along W turns towards +D by tilt_deg.
    rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    return np.diag(1 / s) @ rot.T, rot @ np.diag(s)


def lognormal_diameters(
    n: int, mean: float, sigma: float, rng: np.random.Generator, cutoff: float = 3.0
) -> np.ndarray:
    """``n`` lognormal diameters with arithmetic mean ``mean`` and log-std ``sigma``, (n,).

    Draws beyond ``cutoff`` log-standard deviations are clipped, as DREAM.3D truncates.
    """
    mu = math.log(mean) - 0.5 * sigma**2
    return np.exp(mu + sigma * np.clip(rng.standard_normal(n), -cutoff, cutoff))


def _images(
    points: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Periodic copies of ``points`` (n, 3) in the box ``[lo, hi)`` that lie within ``margin``
    (3,) of it: (m, 3) positions and (m,) indices of the original points."""
    offs = np.stack(np.meshgrid(*[[0, -1, 1]] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    imgs = (points[None] + offs * (hi - lo)).reshape(-1, 3)
    keep = np.all((imgs >= lo - margin) & (imgs < hi + margin), axis=1)
    return imgs[keep], np.flatnonzero(keep) % points.shape[0]


def place_seeds(
    radii: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    metric: np.ndarray,
    rng: np.random.Generator,
    margin: np.ndarray | None = None,
) -> np.ndarray:
    """Best-candidate placement of seeds with radii ``radii`` (n,) (largest first) in a box.

    Seeds are placed in growing batches; each seed tries ``_CANDIDATES`` uniform positions and
    keeps the one whose smallest gap ``distance / (r_new + r_neighbour)`` (in the equiaxed metric)
    to already placed seeds is largest. Batches grow by a quarter of what is placed, so the cost
    is ~ n log n and big early seeds still see each other.

    Parameters
    ----------
    radii : (n,) radii in the equiaxed metric, sorted descending.
    lo, hi : (3,) box corners in voxel coordinates (d, h, w).
    metric : (3, 3) map from voxel coordinates to the equiaxed metric.
    margin : (3,) for a periodic box, how far beyond it periodic copies of seeds are seen.

    Returns
    -------
    (n, 3) seed positions in voxel coordinates.
    """
    n = radii.shape[0]
    pos = np.empty((n, 3))
    done = 0
    while done < n:
        b = min(n - done, max(1, done // 4))
        cand = rng.uniform(lo, hi, (b, _CANDIDATES, 3))
        if done == 0:
            pos[:b] = cand[:, 0]
        else:
            placed, owner = pos[:done], np.arange(done)
            if margin is not None:
                placed, owner = _images(placed, lo, hi, margin)
            m = min(_NEIGHBOURS, placed.shape[0])
            tree = cKDTree(placed @ metric.T)
            dist, idx = tree.query((cand @ metric.T).reshape(-1, 3), k=m, workers=-1)
            dist = dist.reshape(b, _CANDIDATES, m)
            idx = owner[idx.reshape(b, _CANDIDATES, m)]
            gap = (dist / (radii[done : done + b, None, None] + radii[idx])).min(axis=-1)
            pos[done : done + b] = cand[np.arange(b), gap.argmax(axis=1)]
        done += b
    return pos


def laguerre_labels(
    shape: Sequence[int],
    seeds: np.ndarray,
    radii: np.ndarray,
    metric: np.ndarray,
    margin: np.ndarray | None = None,
) -> np.ndarray:
    """Power-diagram cell (seed index) of every voxel; (D, H, W) int64 in ``[0, n)``.

    Nearest seed in 4-D: seeds lifted by ``sqrt(w_max - w_i)`` with ``w_i = r_i^2``, voxels at 0,
    so the squared distance is ``|x - s_i|^2 - w_i + w_max`` (the power distance plus a constant).
    With ``margin`` (3,) the box is periodic: seed copies within ``margin`` of it take part.
    """
    shape = tuple(int(v) for v in shape)
    pts, owner = seeds, np.arange(seeds.shape[0])
    if margin is not None:
        pts, owner = _images(seeds, np.full(3, -0.5), np.asarray(shape) - 0.5, margin)
    w = radii[owner] ** 2
    lifted = np.concatenate([pts @ metric.T, np.sqrt(w.max() - w)[:, None]], axis=1)
    tree = cKDTree(lifted)
    labels = np.empty(shape, dtype=np.int64)
    hw = np.stack(np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij"), -1)
    hw = hw.reshape(-1, 2).astype(np.float64)
    # Query a slab of sections at a time: bounded memory, same answer.
    step = max(1, 2_000_000 // hw.shape[0])
    for d0 in range(0, shape[0], step):
        d = np.arange(d0, min(d0 + step, shape[0]), dtype=np.float64)
        xyz = np.concatenate([np.repeat(d, hw.shape[0])[:, None], np.tile(hw, (d.size, 1))], 1)
        q = np.concatenate([xyz @ metric.T, np.zeros((xyz.shape[0], 1))], axis=1)
        _, idx = tree.query(q, k=1, workers=-1)
        labels[d0 : d0 + d.size] = owner[idx].reshape(d.size, *shape[1:])
    return labels


def _smooth_rotations(
    shape: tuple[int, ...], spread_deg: float, corr: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random small rotations (D, H, W, 4): rotation vectors are Gaussian-filtered noise
    rescaled to ``spread_deg`` rms per component (intragranular orientation gradients)."""
    vec = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(shape), corr, mode="wrap") for _ in range(3)],
        axis=-1,
    )
    vec *= math.radians(spread_deg) / max(float(vec.std()), 1e-12)
    angle = np.linalg.norm(vec, axis=-1)
    axis = np.where(angle[..., None] > 0, vec, np.array([0.0, 0.0, 1.0]))
    return axis_angle_to_quaternion(axis, angle)


def _checked_config(
    shape: Sequence[int],
    seed: int | np.random.SeedSequence,
    grain_size: float,
    size_sigma: float,
    stretch: Sequence[float],
    tilt_deg: float,
    texture: str | Mapping[str, Any],
    periodic: bool,
    intragranular_spread_deg: float,
    dtype: Any,
) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The arguments of :func:`synthetic_volume`, checked: the (D, H, W) shape and the
    JSON-serializable config recorded in the volume's attrs."""
    shape_t = tuple(int(v) for v in shape)
    if len(shape_t) != 3 or min(shape_t) < 1:
        raise ValueError(f"shape must be (D, H, W) with positive sizes; got {shape!r}")
    if grain_size <= 0 or size_sigma < 0:
        raise ValueError("grain_size must be > 0 and size_sigma >= 0")
    config = {
        "shape": list(shape_t),
        "seed": int(seed) if isinstance(seed, int | np.integer) else str(seed),
        "grain_size": float(grain_size),
        "size_sigma": float(size_sigma),
        "stretch": [float(v) for v in stretch],
        "tilt_deg": float(tilt_deg),
        "texture": {"kind": texture} if isinstance(texture, str) else plain_config(texture),
        "periodic": bool(periodic),
        "intragranular_spread_deg": float(intragranular_spread_deg),
        "dtype": np.dtype(dtype).name,
    }
    return shape_t, config


def _grains(
    shape: tuple[int, ...],
    grain_size: float,
    size_sigma: float,
    stretch: Sequence[float],
    tilt_deg: float,
    periodic: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The grain geometry of :func:`synthetic_volume` (same arguments; ``rng`` is its geometry
    stream): lognormal sizes, seeds placed largest first, their Laguerre cells in the box.

    Returns
    -------
    grain_ids : (D, H, W) int32, 1..G: the seeds whose cells reach into the box, in seed order.
    grain_seeds : (G, 3) seed of each grain in voxel coordinates (d, h, w).
    n_seeds : seeds drawn; without ``periodic`` they fill a box padded by about one large grain
        per face, so some of their cells miss the box.
    """
    metric, shape_mat = _metric(stretch, tilt_deg)
    size = np.asarray(shape, dtype=np.float64)
    lo, hi = np.full(3, -0.5), size - 0.5
    # About one large grain's extent per axis: the reach of seeds beyond a face.
    pad = grain_size * math.exp(size_sigma) * np.linalg.norm(shape_mat, axis=1)
    margin = pad if periodic else None
    if not periodic:
        # Seeds in a padded box cut the boundary grains, as in a section of a larger sample.
        lo, hi = lo - pad, hi + pad
    mean_volume = math.pi / 6 * grain_size**3 * math.exp(3 * size_sigma**2)  # E[d^3] of lognormal
    n_seeds = max(1, round(np.prod(hi - lo) / mean_volume))
    diam = np.sort(lognormal_diameters(n_seeds, grain_size, size_sigma, rng))[::-1]
    seeds = place_seeds(diam / 2, lo, hi, metric, rng, margin)
    labels = laguerre_labels(shape, seeds, diam / 2, metric, margin)
    # Relabel the seeds whose cells reach into the box as 1..G (linear time, unlike np.unique).
    present = np.bincount(labels.ravel(), minlength=n_seeds) > 0
    grain_ids = np.cumsum(present).astype(np.int32)[labels]
    return grain_ids, seeds[np.flatnonzero(present)], n_seeds


def synthetic_volume(
    shape: Sequence[int] = (16, 128, 128),
    seed: int | np.random.SeedSequence = 0,
    *,
    grain_size: float = 14.0,
    size_sigma: float = 0.3,
    stretch: Sequence[float] = (1.0, 1.0, 1.0),
    tilt_deg: float = 0.0,
    texture: str | Mapping[str, Any] = "uniform",
    periodic: bool = False,
    intragranular_spread_deg: float = 0.0,
    dtype: Any = np.float32,
) -> Volume:
    """A synthetic alpha-Ti volume: Laguerre-Voronoi grains, lognormal sizes, textured orientations.

    Parameters
    ----------
    shape : (D, H, W) voxels; D is the sectioning direction (sample z).
    seed : everything random derives from it.
    grain_size : mean equivalent-sphere diameter of the grains, in voxels.
    size_sigma : standard deviation of log(diameter) (0 = one size).
    stretch : grain elongation factors along (D, H, W); normalized to unit product, so
        ``(1, 1, 3)`` gives grains 3x longer along W than along D and H at the same volume.
    tilt_deg : rotation of the elongation axes about the H axis (W turns towards +D).
    texture : a texture config for :func:`ebsdray.data.texture.sample_orientations`; spatially
        correlated kinds see each grain at its seed point.
    periodic : periodic boundaries (grains wrap around); otherwise the box is cut from a larger
        tessellation, so boundary grains are truncated as in a real section.
    intragranular_spread_deg : smooth orientation gradients inside grains (0 = none): rms of each
        component of the rotation vector in degrees (the rotation angle's rms is sqrt(3) times
        this), correlated over ~grain_size / 4; ``grain_quaternions`` keep the nominal values.
    dtype : float dtype of the per-voxel quaternions.

    Returns
    -------
    Volume
        ``grain_ids`` (D, H, W) int32 in 1..G, ``quaternions`` (D, H, W, 4) of ``dtype``,
        ``valid`` all True, ``grain_quaternions`` (G + 1, 4) float64 (row 0 unused, identity),
        ``attrs`` with ``"generator"``, ``"config"`` (all arguments, JSON-serializable),
        ``"n_grains"`` and ``"n_seeds"``.
    """
    shape_t, config = _checked_config(
        shape,
        seed,
        grain_size,
        size_sigma,
        stretch,
        tilt_deg,
        texture,
        periodic,
        intragranular_spread_deg,
        dtype,
    )
    # Independent streams: changing the texture does not move the grains, and vice versa.
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng_geom, rng_tex, rng_intra = (np.random.default_rng(s) for s in ss.spawn(3))

    grain_ids, grain_seeds, n_seeds = _grains(
        shape_t, grain_size, size_sigma, stretch, tilt_deg, periodic, rng_geom
    )
    q_grain = sample_orientations(config["texture"], grain_seeds, rng_tex)
    grain_q = np.concatenate([[[1.0, 0.0, 0.0, 0.0]], q_grain], axis=0)
    if intragranular_spread_deg > 0:
        dq = _smooth_rotations(shape_t, intragranular_spread_deg, grain_size / 4, rng_intra)
        quats = standardize(quaternion_multiply(dq, grain_q[grain_ids])).astype(dtype)
    else:
        quats = grain_q.astype(dtype)[grain_ids]  # gather in the output dtype: half the memory
    return Volume(
        grain_ids=grain_ids,
        quaternions=quats,
        valid=np.ones(shape_t, dtype=bool),
        attrs={
            "generator": "ebsdray.data.microstructure.synthetic_volume",
            "config": config,
            "n_grains": len(grain_seeds),
            "n_seeds": int(n_seeds),
        },
        grain_quaternions=grain_q,
    )
