"""Cubochoric coordinates of rotations (Rosca, Morawiec & De Graef 2014, MSMSE 22 075013).

The chain is quaternion <-> homochoric (ball of radius ``R1``, volume-preserving) <-> cubochoric
(cube ``[-a, a]^3`` of volume pi^2, ``a = CUBE_SEMI_EDGE``). Cubochoric coordinates here are the
unscaled ones of the paper. Written from the paper's formulas; two steps use equivalent forms
derived for this module so that float32 is accurate everywhere (identity, pyramid edges, cube
surface):

* the inverse square-to-disk map uses ``s - m = (s^2 - m^2) / (s + m)`` and an ``atan2`` for the
  in-pyramid angle instead of an ``arccos`` close to 1;
* the homochoric radius ``|h| = [(3/4)(w - sin w)]^(1/3)`` is written as ``(w/2) r(w)^(1/3)``
  with ``r(w) = 6 (w - sin w) / w^3`` (a series for small ``w``) and inverted by Newton's method
  instead of a polynomial fit.
"""

from __future__ import annotations

import math

import torch

from ebsdray.data._arrays import as_float_tensor, numpy_or_torch
from ebsdray.data.rotations import standardize

R1: float = (3.0 * math.pi / 4.0) ** (1.0 / 3.0)  # radius of the homochoric ball
_SC: float = (math.pi / 6.0) ** (
    1.0 / 6.0
)  # cube -> intermediate cube of the same volume as the ball
_BETA: float = math.pi ** (5.0 / 6.0) / 6.0 ** (1.0 / 6.0) / 2.0
_K: float = R1 * 2.0**0.25 / _BETA  # square -> disk prefactor
_SQRT2: float = math.sqrt(2.0)
_SQRT_6_PI: float = math.sqrt(6.0 / math.pi)

# Cyclic permutations that put the pyramid's axis (largest |component|) last: z, x, y pyramids.
_FORWARD = ((0, 1, 2), (1, 2, 0), (2, 0, 1))
_BACKWARD = ((0, 1, 2), (2, 0, 1), (1, 2, 0))
# Coefficients 6 / (2k + 3)! of r(w) = sum_k (-1)^k 6 w^(2k) / (2k + 3)!; truncation error < 1e-16
# for w < 1, where the direct formula would lose digits to cancellation.
_R_SERIES = tuple((-1) ** k * 6.0 / math.factorial(2 * k + 3) for k in range(9))
_NEWTON_STEPS = 4


def _pyramid(v: torch.Tensor) -> torch.Tensor:
    """Index 0/1/2 of the z/x/y pyramid containing each vector of (..., 3)."""
    av = v.abs()
    is_z = (av[..., 0] <= av[..., 2]) & (av[..., 1] <= av[..., 2])
    is_x = ~is_z & (av[..., 1] <= av[..., 0])
    return torch.where(is_z, 0, torch.where(is_x, 1, 2))


def _permute(v: torch.Tensor, pyramid: torch.Tensor, table: tuple) -> torch.Tensor:
    idx = torch.tensor(table, device=v.device)[pyramid]
    return torch.take_along_dim(v, idx, dim=-1)


def _r(w: torch.Tensor) -> torch.Tensor:
    """``6 (w - sin w) / w^3`` for ``w`` in [0, pi], accurate in any float dtype (``r(0) = 1``)."""
    w2 = w * w
    series = torch.zeros_like(w)
    for c in reversed(_R_SERIES):
        series = series * w2 + c
    big = w >= 1.0
    w_safe = torch.where(big, w, torch.ones_like(w))
    direct = 6.0 * (w_safe - torch.sin(w_safe)) / w_safe.pow(3)
    return torch.where(big, direct, series)


@numpy_or_torch
def to_homochoric(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) -> homochoric vectors (..., 3) in the ball of radius ``R1``.

    ``h = n [(3/4)(w - sin w)]^(1/3)`` for the rotation by ``w`` about ``n``; ``q`` is standardized
    to ``q0 >= 0`` first so that ``w`` is in [0, pi].
    """
    q = standardize(as_float_tensor(q))
    v = q[..., 1:]
    w = 2.0 * torch.atan2(torch.linalg.vector_norm(v, dim=-1), q[..., 0])
    # |h| / |v| = (w/2) r^(1/3) / sin(w/2): finite (-> 1) at the identity.
    scale = _r(w).pow(1.0 / 3.0) / torch.sinc(w / (2.0 * math.pi))
    return v * scale[..., None]


@numpy_or_torch
def from_homochoric(h: torch.Tensor) -> torch.Tensor:
    """Homochoric vectors (..., 3) -> unit quaternions (..., 4) with ``q0 >= 0``.

    The angle solves ``(w/2) r(w)^(1/3) = |h|`` by Newton's method from ``w = 2|h|(1 + |h|^2/15)``
    (the series to second order); 4 steps reach machine precision on all of [0, pi].
    """
    h = as_float_tensor(h)
    hn = torch.linalg.vector_norm(h, dim=-1)
    w = (2.0 * hn * (1.0 + hn * hn / 15.0)).clamp(max=math.pi)
    for _ in range(_NEWTON_STEPS):
        r3 = _r(w).pow(1.0 / 3.0)
        f = 0.5 * w * r3 - hn
        df = 0.5 * torch.sinc(w / (2.0 * math.pi)).square() / (r3 * r3)
        w = (w - f / df).clamp(0.0, math.pi)
    half = 0.5 * w
    zero = hn == 0
    ratio = torch.where(zero, torch.ones_like(hn), torch.sin(half) / torch.where(zero, 1.0, hn))
    q = torch.cat([torch.cos(half)[..., None], h * ratio[..., None]], dim=-1)
    return standardize(q)


@numpy_or_torch
def cubochoric_to_homochoric(c: torch.Tensor) -> torch.Tensor:
    """Cubochoric (..., 3) in ``[-a, a]^3`` -> homochoric (..., 3)."""
    c = as_float_tensor(c)
    p = _pyramid(c)
    X, Y, Z = (_permute(c, p, _FORWARD) * _SC).unbind(-1)
    # Square -> disk on the (X, Y) face, in the triangle where |V| <= |U|.
    swap = Y.abs() > X.abs()
    U, V = torch.where(swap, Y, X), torch.where(swap, X, Y)
    U_safe = torch.where(U == 0, torch.ones_like(U), U)  # U = 0 only at X = Y = 0 (then T = 0)
    theta = (math.pi / 12.0) * V / U_safe
    ct, st = torch.cos(theta), torch.sin(theta)
    f = _K * U / torch.sqrt(_SQRT2 - ct)
    Ta, Tb = f * (_SQRT2 * ct - 1.0), f * _SQRT2 * st
    T1, T2 = torch.where(swap, Tb, Ta), torch.where(swap, Ta, Tb)
    # Disk -> ball (Lambert equal-area onto the sphere of radius |h| = sqrt(6/pi) |Z|).
    t2 = T1 * T1 + T2 * T2
    Z_safe = torch.where(Z == 0, torch.ones_like(Z), Z)  # Z = 0 only at the origin (then T = 0)
    shrink = torch.sqrt((1.0 - t2 * (math.pi / 24.0) / (Z_safe * Z_safe)).clamp_min(0.0))
    h3 = _SQRT_6_PI * Z - t2 * math.sqrt(math.pi / 24.0) / Z_safe
    return _permute(torch.stack([T1 * shrink, T2 * shrink, h3], dim=-1), p, _BACKWARD)


@numpy_or_torch
def homochoric_to_cubochoric(h: torch.Tensor) -> torch.Tensor:
    """Homochoric (..., 3) -> cubochoric (..., 3) in ``[-a, a]^3``."""
    h = as_float_tensor(h)
    p = _pyramid(h)
    x3, y3, z3 = _permute(h, p, _FORWARD).unbind(-1)
    rs = torch.linalg.vector_norm(h, dim=-1)
    rs_safe = torch.where(rs == 0, torch.ones_like(rs), rs)
    grow = torch.sqrt(2.0 * rs_safe / (rs_safe + z3.abs()))
    T1, T2 = x3 * grow, y3 * grow
    # Inverse square -> disk. With m >= n the two |T| components and s = |(T1, T2, m)|, the face
    # coordinate is sqrt(s (s + m)) / (K 2^(1/4)) and the angle in the triangle atan2(n, s + 2m).
    a1, a2 = T1.abs(), T2.abs()
    m, n = torch.maximum(a1, a2), torch.minimum(a1, a2)
    s = torch.sqrt(a1 * a1 + a2 * a2 + m * m)
    U = torch.sqrt(s * (s + m)) / (_K * 2.0**0.25)
    V = (12.0 / math.pi) * torch.atan2(n, s + 2.0 * m) * U
    swap = a2 > a1
    X = torch.copysign(torch.where(swap, V, U), T1)
    Y = torch.copysign(torch.where(swap, U, V), T2)
    Z = torch.copysign(rs / _SQRT_6_PI, z3)
    return _permute(torch.stack([X, Y, Z], dim=-1) / _SC, p, _BACKWARD)


@numpy_or_torch
def to_cubochoric(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) -> unscaled cubochoric coordinates (..., 3) in ``[-a, a]^3``.

    ``q`` and ``-q`` give the same point (``q`` is standardized to ``q0 >= 0``). 180-degree
    rotations lie on the cube surface, where ``q`` and its antipode ``(0, -v)`` map to opposite
    faces.
    """
    return homochoric_to_cubochoric(to_homochoric(q))


@numpy_or_torch
def from_cubochoric(c: torch.Tensor) -> torch.Tensor:
    """Cubochoric coordinates (..., 3) in ``[-a, a]^3`` -> unit quaternions (..., 4), q0 >= 0."""
    return from_homochoric(cubochoric_to_homochoric(c))


def random_quaternions(
    shape: int | tuple[int, ...],
    generator_or_seed: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-uniform random rotations as unit quaternions of shape ``(*shape, 4)``, ``q0 >= 0``.

    Method: normalized standard-Gaussian 4-vectors (the Gaussian is isotropic, so the direction is
    uniform on S^3, which is the Haar measure of SO(3) under the double cover). Draws in float64 on
    ``generator``'s device, then casts, so the values do not depend on ``dtype``.

    Parameters
    ----------
    shape : leading shape of the output.
    generator_or_seed : a ``torch.Generator``, an integer seed, or None (global RNG).
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    gen = generator_or_seed
    if isinstance(gen, int):
        gen = torch.Generator().manual_seed(gen)
    gen_device = gen.device if gen is not None else None
    g = torch.randn((*shape, 4), generator=gen, dtype=torch.float64, device=gen_device)
    # A zero vector has probability 0 but would divide by 0; map it to the identity.
    g = torch.where((g == 0).all(-1, keepdim=True), g.new_tensor([1.0, 0.0, 0.0, 0.0]), g)
    return standardize(g).to(dtype=dtype, device=device)
