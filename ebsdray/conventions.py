"""Conventions of the whole package, written down once.

Material: alpha-Ti, hexagonal, Laue group 6/mmm, proper point group 622 (12 rotations).

Orientations
    Bunge Euler angles (ZXZ, radians), passive: the orientation matrix ``g`` maps sample-frame vectors
    to crystal-frame vectors (``v_crystal = g @ v_sample``). Unit quaternions are scalar-first
    ``(q0, q1, q2, q3)`` with the Hamilton product and ``q0 >= 0`` (orix / EMsoftOO convention;
    DAMASK's quaternions are the conjugates of these: never mix libraries). Crystal symmetry acts on
    the left: ``s * q`` is the same orientation as ``q`` for every operator ``s`` of 622.

Sample frame of a volume ``(D, H, W)``
    x along W (columns), y along H (rows), z along D (the section normal, pointing to increasing D).
    A 2-D section is an image ``(H, W)`` seen in that frame.

Tensor layout
    Images ``(B, C, H, W)`` float32 with channels ``[ebsd(3) | pl(C_PL)]`` for the multimodal model,
    the EBSD or PL part alone for the single-modality models (:class:`ChannelLayout`).
    Volumes ``(D, H, W, ...)``, section index first. Unindexed EBSD pixels: grain id 0 and
    ``valid = False``.

Seeds
    Every random function takes a seed or a generator. Posterior sample ``k`` of section ``d`` draws
    from ``numpy.random.SeedSequence([base_seed, d, k])`` so results do not depend on how work was
    split across Ray replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- PL forward model (Ti alpha at 750 nm, EMsoftOO CPLM template defaults) -----------------------
EPS_ORDINARY: complex = 6.676 + 34.954j
EPS_EXTRAORDINARY: complex = -20.377 + 30.405j
ANALYZER_UNCROSSING_DEG: float = 1.0
DEFAULT_STAGE_ANGLES: int = 36  # stage rotations over 360 degrees

# --- Cubochoric space (Rosca, Morawiec & De Graef 2014) ------------------------------------------
CUBE_SEMI_EDGE: float = math.pi ** (2.0 / 3.0) / 2.0  # a; the cube [-a, a]^3 has volume pi^2
# Extent of the 622 fundamental zone in cubochoric coordinates: the EBSD channels divide by these so
# the zone fills [-1, 1] on every axis. Measured (tests/data/test_cubochoric.py keeps it checked) as
# max |cu| over a dense grid of the zone's boundary in Rodrigues space (top faces r3 = +-tan 15 deg,
# 12 side faces r.n = 1; 1.1e7 points) and over 2e6 reduced random orientations. The maxima are
# exact boundary points: |x|, |y| = 0.6310998 at the 24 prism vertices r = (1, +-tan15, +-tan15)
# (rotated by 30 deg steps; angle 93.841 deg, the largest in the zone), |z| = 0.3458359 at
# r = tan15 (+-1, +-1, +-1), where the cubochoric point lies on the cube diagonal. For either,
# |cu| = |h| / (sqrt(6/pi) (pi/6)^(1/6)) on the pyramid axis. Random sampling alone misses the z
# maximum (2e6 samples reach only 0.3434). Rounded up in the third decimal.
FZ_CUBOCHORIC_EXTENT: tuple[float, float, float] = (0.632, 0.632, 0.346)

# --- Channels ------------------------------------------------------------------------------------
EBSD_CHANNELS: int = 3
VARIANTS: tuple[str, ...] = ("multimodal", "ebsd", "pl")


@dataclass(frozen=True)
class ChannelLayout:
    """Channels of one model variant: ``[ebsd(3) | pl(C_PL)]``, or either part alone.

    Parameters
    ----------
    variant : {"multimodal", "ebsd", "pl"}
    pl_channels : int
        C_PL of the codec (counted even by an EBSD-only layout, which just has no PL slice).

    Raises
    ------
    ValueError : an unknown variant.

    Examples
    --------
    >>> layout = ChannelLayout("multimodal", 5)
    >>> layout.channels, layout.ebsd, layout.pl
    (8, slice(0, 3, None), slice(3, 8, None))
    >>> ChannelLayout("pl", 5).pl
    slice(0, 5, None)
    """

    variant: str
    pl_channels: int

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model variant {self.variant!r}; expected one of {VARIANTS}")

    @property
    def has_ebsd(self) -> bool:
        return self.variant != "pl"

    @property
    def has_pl(self) -> bool:
        return self.variant != "ebsd"

    @property
    def channels(self) -> int:
        """C of an ``(B, C, H, W)`` tensor in this layout."""
        return EBSD_CHANNELS * self.has_ebsd + self.pl_channels * self.has_pl

    @property
    def ebsd(self) -> slice:
        """The 3 EBSD channels (always first); a ValueError for a layout without them."""
        if not self.has_ebsd:
            raise ValueError(f"{self.variant} channels hold no EBSD")
        return slice(0, EBSD_CHANNELS)

    @property
    def pl(self) -> slice:
        """The C_PL PL channels (after the EBSD ones); a ValueError for a layout without them."""
        if not self.has_pl:
            raise ValueError(f"{self.variant} channels hold no PL")
        start = EBSD_CHANNELS if self.has_ebsd else 0
        return slice(start, start + self.pl_channels)

    @classmethod
    def infer(cls, channels: int, pl_channels: int) -> ChannelLayout:
        """The layout with ``channels`` channels for a codec of ``pl_channels`` PL channels.

        Raises
        ------
        ValueError : no variant has that many channels, or two do (then the caller must say
            which; the message names both).
        """
        options: dict[int, str] = {}
        for variant in ("pl", "ebsd", "multimodal"):
            c = cls(variant, pl_channels).channels
            if c in options:
                raise ValueError(
                    f"{c} channels could be {options[c]!r} or {variant!r}; pass variant="
                )
            options[c] = variant
        if channels not in options:
            raise ValueError(
                f"{channels} channels match no variant of this codec (multimodal "
                f"{EBSD_CHANNELS + pl_channels}, EBSD {EBSD_CHANNELS}, PL {pl_channels})"
            )
        return cls(options[channels], pl_channels)
