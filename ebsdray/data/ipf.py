"""Inverse pole figure (IPF) colours of alpha-Ti orientations in the 6/mmm standard triangle.

An IPF map colours each pixel by which crystal direction lies along a chosen sample direction
(sample Z, the section normal, by default). With the passive convention of
:mod:`ebsdray.conventions` that crystal direction is ``h = g v``. The Laue group 6/mmm (the 12
rotations of 622 and the inversion: an IPF cannot tell ``h`` from ``-h``) folds every direction
into the standard triangle: polar angle 0..90 degrees from [0001], azimuth 0..30 degrees.

Crystal frame: x along a1 = [2-1-10], z along c = [0001] (orix, EMsoft and MTEX's ``x||a``), so
[10-10] lies at azimuth 30 degrees. In a frame with x along a* (some vendors' setting) the two
prism corners swap labels; the colour of a Cartesian crystal direction does not change.

Colour scheme: the TSL-like key of MTEX and orix (Nolze & Hielscher 2016, J. Appl. Cryst. 49,
1786, section 2.4), rebuilt here from its geometry. Polar coordinates are taken about the
triangle's centre ``c`` (the normalized sum of its corners). Lightness runs from 1 (white) at
``c`` to 0.5 (full colour) on the edges: ``L = 1 - s / (2 R(alpha))`` with ``s`` the angle from
``c`` and ``R(alpha)`` the angle from ``c`` to the edge along the same great circle. Hue is the
angle ``alpha`` about ``c``, re-timed so each corner-to-corner third of the boundary takes one
third of the colour wheel, advancing at a rate proportional to ``R``: red at [0001], green at
[2-1-10], blue at [10-10]. HSL with saturation 1 is then turned into RGB.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ebsdray.data._arrays import as_float_tensor, numpy_or_torch
from ebsdray.data.rotations import quaternion_to_matrix

_SIN30, _COS30 = 0.5, math.sqrt(3.0) / 2.0
# Corners of the standard triangle (Cartesian crystal directions) and their labels.
CORNERS: dict[str, tuple[float, float, float]] = {
    "0001": (0.0, 0.0, 1.0),
    "2-1-10": (1.0, 0.0, 0.0),
    "10-10": (_COS30, _SIN30, 0.0),
}
# Inward normals of the triangle's edges: y >= 0, azimuth <= 30 degrees, z >= 0.
_NORMALS = np.array([[0.0, 1.0, 0.0], [_SIN30, -_COS30, 0.0], [0.0, 0.0, 1.0]])
_HUE_SAMPLES = 4096  # samples of the hue re-timing over 2 pi (colour error 2e-6 vs 65536)


@numpy_or_torch
def crystal_direction(q: torch.Tensor, direction=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """The crystal direction ``g v`` along the sample direction ``v`` (passive ``g``).

    Parameters
    ----------
    q : (..., 4) unit quaternions (scalar first).
    direction : (3,) sample direction, normalized here.

    Returns
    -------
    (..., 3) unit vectors in the crystal frame.
    """
    g = quaternion_to_matrix(as_float_tensor(q))
    v = torch.as_tensor(direction, dtype=g.dtype, device=g.device)
    return g @ (v / torch.linalg.vector_norm(v))


@numpy_or_torch
def to_standard_triangle(h: torch.Tensor) -> torch.Tensor:
    """Fold crystal directions into the 6/mmm standard triangle.

    Parameters
    ----------
    h : (..., 3) crystal directions (any norm > 0).

    Returns
    -------
    (..., 3) unit vectors with polar angle in [0, 90] and azimuth in [0, 30] degrees.
    """
    h = as_float_tensor(h)
    h = h / torch.linalg.vector_norm(h, dim=-1, keepdim=True)
    h = torch.where(h[..., 2:] < 0, -h, h)  # inversion is in the Laue group
    sin_polar = torch.hypot(h[..., 0], h[..., 1])
    # 6-fold axis: azimuth mod 60; the mirror through the 30-degree direction folds [30, 60).
    phi = torch.remainder(torch.atan2(h[..., 1], h[..., 0]), math.pi / 3)
    phi = torch.where(phi > math.pi / 6, math.pi / 3 - phi, phi)
    return torch.stack([sin_polar * torch.cos(phi), sin_polar * torch.sin(phi), h[..., 2]], -1)


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``c`` of the triangle and the tangent basis ``e1`` (towards [0001]), ``e2``."""
    corners = np.array(list(CORNERS.values()))
    c = corners.sum(0) / np.linalg.norm(corners.sum(0))
    e1 = corners[0] - corners[0] @ c * c
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    # Orient alpha so the wheel runs red -> green -> blue: [2-1-10] before [10-10].
    if _alpha(corners[1], c, e1, e2) > _alpha(corners[2], c, e1, e2):
        e2 = -e2
    return c, e1, e2


def _alpha(v: np.ndarray, c: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> float:
    return float(np.mod(np.arctan2(v @ e2, v @ e1), 2 * np.pi))


def _edge_distance(t: torch.Tensor, c: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Angle ``R`` from ``c`` to the triangle's edge along unit tangent directions ``t`` (..., 3).

    On the great circle ``c cos s + t sin s`` the plane ``n . x = 0`` is crossed where
    ``tan s = -(n . c) / (n . t)``; ``n . c > 0`` puts that crossing in (0, pi), and the first
    crossing over the three edges is the exit.
    """
    nc = normals @ c  # (3,)
    nt = t @ normals.T  # (..., 3)
    return torch.atan2(nc.expand_as(nt), -nt).min(dim=-1).values


@functools.lru_cache(maxsize=1)
def _hue_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hue re-timing: ``F(alpha) = integral of R`` at ``_HUE_SAMPLES + 1`` uniform angles in
    [0, 2 pi], the knots (corner angles about c: [0001] at 0 by the choice of e1, then
    [2-1-10], [10-10], and a full turn) and ``F`` at the knots."""
    c, e1, e2 = _frame()
    alpha = np.linspace(0.0, 2 * np.pi, _HUE_SAMPLES + 1)
    t = np.cos(alpha)[:, None] * e1 + np.sin(alpha)[:, None] * e2
    r = _edge_distance(torch.from_numpy(t), torch.from_numpy(c), torch.from_numpy(_NORMALS))
    r = r.numpy()
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (r[1:] + r[:-1]) * np.diff(alpha))])
    corners = list(CORNERS.values())[1:]
    knots = np.array([0.0, *(_alpha(np.array(v), c, e1, e2) for v in corners), 2 * np.pi])
    return cum, knots, np.interp(knots, alpha, cum)


def _hue(alpha: torch.Tensor) -> torch.Tensor:
    """Hue in turns at angles ``alpha`` in [0, 2 pi]: arc k (between corners k and k + 1) spans
    [k / 3, (k + 1) / 3]; both ends of an arc use the same interpolated ``F``, so corners are
    exact."""
    cum, knots, at_knots = (
        torch.as_tensor(a, dtype=alpha.dtype, device=alpha.device) for a in _hue_tables()
    )
    f = _interp_uniform(alpha, cum, 2 * math.pi)
    k = torch.bucketize(alpha, knots[1:3].contiguous(), right=True)
    return (k + (f - at_knots[k]) / (at_knots[k + 1] - at_knots[k])) / 3.0


def _interp_uniform(x: torch.Tensor, table: torch.Tensor, period: float) -> torch.Tensor:
    """Linear interpolation in ``table`` sampled uniformly on [0, period], at ``x`` in [0, period]."""
    tab = torch.as_tensor(table, dtype=x.dtype, device=x.device)
    pos = (x / period * (len(table) - 1)).clamp(0, len(table) - 1)
    lo = pos.floor().long().clamp(max=len(table) - 2)
    frac = pos - lo
    return tab[lo] * (1 - frac) + tab[lo + 1] * frac


def _hsl_to_rgb(hue: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
    """HSL with saturation 1 -> RGB; ``hue`` in turns, ``lightness`` in [0, 1]; (...) -> (..., 3)."""
    a = torch.minimum(lightness, 1 - lightness)[..., None]
    n = torch.tensor([0.0, 8.0, 4.0], dtype=hue.dtype, device=hue.device)
    k = torch.remainder(n + 12 * hue[..., None], 12)
    return lightness[..., None] - a * torch.clamp(torch.minimum(k - 3, 9 - k), -1, 1)


@numpy_or_torch
def triangle_colors(h: torch.Tensor) -> torch.Tensor:
    """RGB of crystal directions already in the standard triangle (see the module docstring).

    Parameters
    ----------
    h : (..., 3) unit vectors in the triangle (:func:`to_standard_triangle`).

    Returns
    -------
    (..., 3) RGB in [0, 1].
    """
    h = as_float_tensor(h)
    c, e1, e2 = (torch.as_tensor(a, dtype=h.dtype, device=h.device) for a in _frame())
    normals = torch.as_tensor(_NORMALS, dtype=h.dtype, device=h.device)
    u = h - (h @ c)[..., None] * c  # the tangent part at c
    s = torch.atan2(torch.linalg.vector_norm(u, dim=-1), h @ c)
    alpha = torch.remainder(torch.atan2(u @ e2, u @ e1), 2 * math.pi)
    t = torch.cos(alpha)[..., None] * e1 + torch.sin(alpha)[..., None] * e2
    lightness = 1.0 - 0.5 * (s / _edge_distance(t, c, normals)).clamp(0, 1)
    hue = _hue(alpha)
    return _hsl_to_rgb(hue, lightness).clamp(0, 1)


@numpy_or_torch
def ipf_colors(q: torch.Tensor, direction=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """IPF colours of orientations for one sample direction (default sample Z).

    Parameters
    ----------
    q : (..., 4) unit quaternions (scalar first, passive; :mod:`ebsdray.conventions`).
    direction : (3,) sample direction: (0, 0, 1) = Z (section normal), (1, 0, 0) = X (along W).

    Returns
    -------
    (..., 3) RGB in [0, 1]: red where [0001] lies along ``direction``, green for [2-1-10],
    blue for [10-10], white at the triangle's centre. Equivalent orientations under 622 (and
    the inversion) get the same colour.
    """
    return triangle_colors(to_standard_triangle(crystal_direction(q, direction)))


def key_image(width: int = 256) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The colour key: the standard triangle in stereographic projection, as an RGBA image.

    Projection from the south pole: ``(x, y) = (h_x, h_y) / (1 + h_z)``, so [0001] sits at the
    origin, [2-1-10] at (1, 0) and [10-10] at (cos 30, sin 30); the triangle is the 30-degree
    sector of the unit disk.

    Parameters
    ----------
    width : pixels along x; the image is ``width // 2`` pixels high.

    Returns
    -------
    rgba : (width // 2, width, 4) float in [0, 1], row 0 at y = 0 (show with
        ``origin="lower"``); alpha 0 outside the triangle.
    extent : ``(0, 1, 0, 0.5)`` for ``imshow(..., extent=extent)``.
    """
    ny = width // 2
    x = (np.arange(width) + 0.5) / width
    y = (np.arange(ny) + 0.5) / ny * 0.5
    xx, yy = np.meshgrid(x, y)
    r2 = xx**2 + yy**2
    h = np.stack([2 * xx, 2 * yy, 1 - r2], -1) / (1 + r2)[..., None]
    inside = (r2 <= 1.0) & (yy <= xx * math.tan(math.pi / 6))
    rgba = np.ones((ny, width, 4))
    rgba[..., :3] = triangle_colors(to_standard_triangle(h))
    rgba[..., 3] = inside
    return rgba, (0.0, 1.0, 0.0, 0.5)
