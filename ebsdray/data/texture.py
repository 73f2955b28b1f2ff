"""Orientation samplers for synthetic alpha-Ti grains (one orientation per grain).

All samplers return unit quaternions ``(G, 4)``, float64, scalar first, ``q0 >= 0``, in the
passive convention of :mod:`ebsdray.conventions` (``g`` maps sample vectors to crystal vectors,
crystal symmetry acts on the left). Directions named "crystal" are Cartesian crystal directions
(z || c, x || a); directions named "sample" are in the sample frame (x || W, y || H, z || D).

Entry point: :func:`sample_orientations` with a small config::

    {"kind": "uniform"}
    {"kind": "spherical", "euler_deg": [0, 45, 0], "spread_deg": 8}
    {"kind": "fibre", "crystal": [0, 0, 1], "sample": [0, 0, 1], "spread_deg": 10}
    {"kind": "components", "random_fraction": 0.2, "components": [
        {"euler_deg": [0, 45, 0], "spread_deg": 5, "weight": 2},
        {"crystal": [0, 0, 1], "sample": [1, 0, 0], "spread_deg": 10}]}
    {"kind": "macrozones", "n_zones": 6, "zone_size": 80, "spread_deg": 8}

Macrozones: contiguous zones ~``zone_size`` voxels across, each with a c-axis drawn from
``n_zones`` random families; grains in a zone have their c-axis within ~``spread_deg`` of the
zone's and a uniform rotation about c, so neighbours look alike in PL but differ in EBSD.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from ebsdray.data.rotations import (
    axis_angle_to_quaternion,
    euler_to_quaternion,
    quaternion_multiply,
    standardize,
)

# Keys each kind accepts (besides "kind"); the value is the default, None = required.
TEXTURE_KINDS: dict[str, dict[str, Any]] = {
    "uniform": {},
    "spherical": {"euler_deg": None, "quaternion": None, "spread_deg": 5.0},
    "fibre": {"crystal": [0.0, 0.0, 1.0], "sample": [0.0, 0.0, 1.0], "spread_deg": 10.0},
    "components": {"components": None, "random_fraction": 0.0},
    "macrozones": {
        "n_zones": 6,
        "zone_size": 80.0,
        "spread_deg": 10.0,
        "zone_stretch": [1.0, 1.0, 1.0],
        "random_fraction": 0.0,
    },
}
_COMPONENT_KEYS = {"euler_deg", "quaternion", "crystal", "sample", "spread_deg", "weight"}


def plain_config(value: Any) -> Any:
    """A JSON-ready copy of a config: mappings -> dict, sequences and arrays -> list, numpy
    scalars -> Python (so Hydra/OmegaConf containers and numpy values are accepted)."""
    if isinstance(value, Mapping):
        return {str(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain_config(v) for v in value]
    return value


def uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-uniform orientations, (n, 4): normalized 4-D Gaussian vectors are uniform on S^3."""
    return standardize(rng.standard_normal((n, 4)))


def _random_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _unit(v: Any, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (3,) or not np.linalg.norm(v) > 0:
        raise ValueError(f"{name} must be a non-zero 3-vector; got {v!r}")
    return v / np.linalg.norm(v)


def scatter(q: np.ndarray, spread_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate each orientation by a random axis and an angle ``|N(0, spread)|``.

    Parameters
    ----------
    q : (n, 4) orientations.
    spread_deg : standard deviation of the scatter angle in degrees (0 = no scatter).

    Returns
    -------
    (n, 4) orientations. An isotropic axis makes left and right composition equivalent in law.
    """
    n = q.shape[0]
    if spread_deg <= 0:
        return standardize(q)
    angle = np.abs(rng.normal(0.0, math.radians(spread_deg), n))
    dq = axis_angle_to_quaternion(_random_unit_vectors(n, rng), angle)
    return standardize(quaternion_multiply(dq, q))


def spherical(
    center: np.ndarray, spread_deg: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` orientations scattered about ``center`` ((4,) quaternion); returns (n, 4)."""
    center = standardize(np.asarray(center, dtype=np.float64).reshape(1, 4))
    return scatter(np.repeat(center, n, axis=0), spread_deg, rng)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quaternion (4,) of the rotation R with ``R a = b`` (unit 3-vectors)."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.array([1.0, 0.0, 0.0, 0.0])
        # Antiparallel: any axis perpendicular to a, by 180 degrees.
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
    return axis_angle_to_quaternion(axis, math.atan2(s, c))


def tilt_direction(
    q: np.ndarray, crystal: np.ndarray, spread_deg: float, rng: np.random.Generator
) -> np.ndarray:
    """Tilt the crystal direction ``crystal`` of each orientation by ``|N(0, spread)|`` degrees.

    The tilt axis is random and perpendicular to ``crystal`` (crystal frame, left composition),
    so the angle between the sample direction that ``crystal`` pointed along and the new
    ``crystal`` direction equals the drawn angle. (n, 4) -> (n, 4).
    """
    n = q.shape[0]
    if spread_deg <= 0:
        return standardize(q)
    h = _unit(crystal, "crystal")
    axes = np.cross(h, _random_unit_vectors(n, rng))  # perpendicular to h, random azimuth
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angle = np.abs(rng.normal(0.0, math.radians(spread_deg), n))
    return standardize(quaternion_multiply(axis_angle_to_quaternion(axes, angle), q))


def fibre(
    crystal: Any, sample: Any, spread_deg: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Fibre texture: crystal direction ``crystal`` parallel to sample direction ``sample``.

    Uniform rotation about the fibre, then the fibre direction tilted by ``|N(0, spread)|``.
    Returns (n, 4). Example: basal fibre c || z is ``crystal=[0, 0, 1], sample=[0, 0, 1]``.
    """
    h, s = _unit(crystal, "crystal"), _unit(sample, "sample")
    # g maps sample to crystal vectors, so g s = h; its quaternion is the rotation taking s to h.
    q0 = _rotation_between(s, h)
    about = axis_angle_to_quaternion(np.tile(h, (n, 1)), rng.uniform(0, 2 * math.pi, n))
    q = quaternion_multiply(about, np.tile(q0, (n, 1)))
    return tilt_direction(q, h, spread_deg, rng)


def _center_quaternion(cfg: Mapping[str, Any], where: str) -> np.ndarray:
    if cfg.get("quaternion") is not None:
        return standardize(np.asarray(cfg["quaternion"], dtype=np.float64))
    if cfg.get("euler_deg") is not None:
        return euler_to_quaternion(np.radians(np.asarray(cfg["euler_deg"], dtype=np.float64)))
    raise ValueError(f"{where} needs 'euler_deg' (Bunge, degrees) or 'quaternion'")


def _components(cfg: Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    comps = cfg["components"]
    if not isinstance(comps, list | tuple) or not comps:
        raise ValueError("'components' must be a non-empty list of component dicts")
    for i, c in enumerate(comps):
        bad = set(c) - _COMPONENT_KEYS
        if bad:
            raise ValueError(
                f"component {i}: unknown keys {sorted(bad)}; valid: {sorted(_COMPONENT_KEYS)}"
            )
    frac = float(cfg.get("random_fraction", 0.0))
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"random_fraction must be in [0, 1]; got {frac}")
    weights = np.array([float(c.get("weight", 1.0)) for c in comps] + [0.0])
    weights = (1.0 - frac) * weights[:-1] / weights[:-1].sum()
    choice = rng.choice(len(comps) + 1, size=n, p=[*weights, frac])
    out = uniform(n, rng)
    for i, c in enumerate(comps):
        idx = np.flatnonzero(choice == i)
        spread = float(c.get("spread_deg", 5.0))
        if "crystal" in c or "sample" in c:
            crystal, sample = c.get("crystal", [0, 0, 1]), c.get("sample", [0, 0, 1])
            out[idx] = fibre(crystal, sample, spread, idx.size, rng)
        else:
            out[idx] = spherical(_center_quaternion(c, f"component {i}"), spread, idx.size, rng)
    return out


def _smooth_field(
    pts: np.ndarray, length: float, n_out: int, rng: np.random.Generator, n_features: int = 64
) -> np.ndarray:
    """A stationary smooth random field of correlation length ~``length`` at ``pts`` (G, 3):
    random Fourier features, unit variance per output; returns (G, n_out)."""
    freq = rng.normal(0.0, 1.0 / length, (n_features, 3))
    phase = rng.uniform(0, 2 * math.pi, n_features)
    amp = rng.standard_normal((n_features, n_out)) * math.sqrt(2.0 / n_features)
    return np.cos(pts @ freq.T + phase) @ amp


def macrozone_labels(
    centroids: np.ndarray,
    n_zones: int,
    zone_size: float,
    rng: np.random.Generator,
    zone_stretch: Any = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Group points into spatially contiguous zones and give each zone one of ``n_zones`` families.

    Zones are the Voronoi cells of random centres (one per ``pi/6 zone_size^3`` of the points'
    bounding box, so a zone is ~``zone_size`` across), with boundaries made irregular by a smooth
    random displacement; each zone draws its family at random, so a family recurs in separate
    patches, as macrozones do in Ti alloys.

    Parameters
    ----------
    centroids : (G, 3) point coordinates (voxels, (D, H, W) order).
    zone_stretch : (3,) zone elongation along (D, H, W) (normalized to unit product).

    Returns
    -------
    (G,) int labels in ``[0, n_zones)``.
    """
    s = np.asarray(zone_stretch, dtype=np.float64)
    if s.shape != (3,) or np.any(s <= 0):
        raise ValueError(f"zone_stretch must be 3 positive factors; got {zone_stretch!r}")
    pts = centroids / (s / np.prod(s) ** (1 / 3))
    pts = pts + 0.25 * zone_size * _smooth_field(pts, zone_size / 2, 3, rng)
    lo, hi = pts.min(axis=0) - zone_size / 2, pts.max(axis=0) + zone_size / 2
    n_centres = max(1, round(float(np.prod(hi - lo)) / (math.pi / 6 * zone_size**3)))
    centres = rng.uniform(lo, hi, (n_centres, 3))
    _, zone = cKDTree(centres).query(pts, k=1)
    return rng.integers(n_zones, size=n_centres)[zone]


def _macrozones(
    cfg: Mapping[str, Any], centroids: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    n_zones, zone_size = int(cfg["n_zones"]), float(cfg["zone_size"])
    if n_zones < 1 or zone_size <= 0:
        raise ValueError(f"macrozones need n_zones >= 1 and zone_size > 0; got {dict(cfg)}")
    n = centroids.shape[0]
    labels = macrozone_labels(centroids, n_zones, zone_size, rng, cfg["zone_stretch"])
    zone_c = _random_unit_vectors(n_zones, rng)  # each family's mean c-axis (sample frame)
    # c || zone axis with a uniform rotation about c: neighbours look alike in PL, differ in EBSD.
    q = np.empty((n, 4))
    for k in range(n_zones):
        idx = np.flatnonzero(labels == k)
        q[idx] = fibre([0, 0, 1], zone_c[k], float(cfg["spread_deg"]), idx.size, rng)
    frac = float(cfg.get("random_fraction", 0.0))
    if frac > 0:
        rand = rng.random(n) < frac
        q[rand] = uniform(int(rand.sum()), rng)
    return q


def sample_orientations(
    texture: str | Mapping[str, Any], centroids: np.ndarray | int, rng: np.random.Generator
) -> np.ndarray:
    """One orientation per grain from a texture config.

    Parameters
    ----------
    texture : a kind name (``"uniform"``) or a dict with ``"kind"`` and that kind's keys (see the
        module docstring and :data:`TEXTURE_KINDS`).
    centroids : (G, 3) grain centroids in voxels (used by spatially correlated kinds), or G.
    rng : the generator all randomness is drawn from.

    Returns
    -------
    (G, 4) float64 unit quaternions, ``q0 >= 0``.
    """
    cfg = {"kind": texture} if isinstance(texture, str) else plain_config(texture)
    kind = cfg.pop("kind", None)
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"unknown texture kind {kind!r}; valid kinds: {sorted(TEXTURE_KINDS)}")
    allowed = TEXTURE_KINDS[kind]
    bad = set(cfg) - set(allowed)
    if bad:
        raise ValueError(
            f"texture kind {kind!r}: unknown keys {sorted(bad)}; valid keys: {sorted(allowed)}"
        )
    cfg = {**{k: v for k, v in allowed.items() if v is not None}, **cfg}
    if isinstance(centroids, int | np.integer):
        pts = np.zeros((int(centroids), 3))
    else:
        pts = np.asarray(centroids, dtype=np.float64).reshape(-1, 3)
    n = pts.shape[0]
    if kind == "uniform":
        return uniform(n, rng)
    if kind == "spherical":
        return spherical(_center_quaternion(cfg, "spherical texture"), cfg["spread_deg"], n, rng)
    if kind == "fibre":
        return fibre(cfg["crystal"], cfg["sample"], float(cfg["spread_deg"]), n, rng)
    if kind == "components":
        if "components" not in cfg:
            raise ValueError("texture kind 'components' needs a 'components' list")
        return _components(cfg, n, rng)
    if isinstance(centroids, int | np.integer):
        raise ValueError("macrozones need grain centroids (G, 3), not a count")
    return _macrozones(cfg, pts, rng)
