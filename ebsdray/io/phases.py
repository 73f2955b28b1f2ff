"""Which crystallographic phases of an EBSD map ebsdray accepts: alpha-titanium only.

The prior was trained on alpha-Ti and the PL forward model uses alpha-Ti's optical constants, so a
map of another material would be reconstructed silently wrong. A phase is taken for alpha-Ti when
it is hexagonal and, where the file gives lattice parameters, ``a`` and ``c/a`` are close to
alpha-Ti's (a = 2.95 A, c = 4.68 A, c/a = 1.587). Magnesium (a = 3.21 A, c/a = 1.624), zirconium
(a = 3.23 A), cobalt (a = 2.51 A) and zinc (c/a = 1.86) are hexagonal too and are refused by name and
lattice parameters; alloyed alpha-Ti (Ti-6Al-4V: a = 2.925 A, c/a = 1.597) passes. A hexagonal phase
without lattice parameters cannot be told apart: it is accepted, with a warning unless its name says
titanium.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ALPHA_TI_A = 2.95  # Angstrom
ALPHA_TI_C = 4.68  # Angstrom
ALPHA_TI_C_OVER_A = ALPHA_TI_C / ALPHA_TI_A
A_TOLERANCE = 0.03  # relative; alloying moves a by ~1%, the next hexagonal metals are >= 8% away
C_OVER_A_TOLERANCE = 0.015  # relative; Ti-6Al-4V is 0.7% above, Mg 2.3% above
_ALPHA_TI_TEXT = (
    f"alpha-Ti: hexagonal, a = {ALPHA_TI_A:.2f} A, c = {ALPHA_TI_C:.2f} A, "
    f"c/a = {ALPHA_TI_C_OVER_A:.3f}"
)


@dataclass(frozen=True)
class Phase:
    """A phase as declared in an EBSD file's header.

    Attributes
    ----------
    id : the phase number used by the file's phase column.
    name : material name as written ("" when the file has none).
    hexagonal : True / False from the file's symmetry code; None when the file does not say.
    symmetry : the symmetry as written (e.g. "Symmetry 62" for OIM, "Laue group 9" for Oxford).
    lattice : (a, c) in Angstrom, or None when the file has no lattice parameters.
    """

    id: int
    name: str
    hexagonal: bool | None
    symmetry: str
    lattice: tuple[float, float] | None = None

    def describe(self) -> str:
        """E.g. ``phase 1 'Magnesium' (Symmetry 62, a = 3.210 A, c = 5.210 A, c/a = 1.623)``."""
        facts = [self.symmetry] if self.symmetry else []
        if self.lattice is not None:
            a, c = self.lattice
            facts.append(f"a = {a:.3f} A, c = {c:.3f} A, c/a = {c / a:.3f}")
        inside = f" ({', '.join(facts)})" if facts else ""
        return f"phase {self.id} {self.name or '(unnamed)'!r}{inside}"


def alpha_ti_problem(phase: Phase) -> str | None:
    """Why ``phase`` is not alpha-Ti, or None when it is (or cannot be told apart from it)."""
    if phase.hexagonal is False:
        return "is not hexagonal"
    if phase.lattice is None:
        return None
    a, c = phase.lattice
    if not (math.isfinite(a) and math.isfinite(c) and a > 0 and c > 0):
        return f"has unusable lattice parameters a = {a}, c = {c}"
    if abs(a / ALPHA_TI_A - 1) > A_TOLERANCE:
        return f"has a = {a:.3f} A, more than {A_TOLERANCE:.0%} from alpha-Ti's"
    if abs((c / a) / ALPHA_TI_C_OVER_A - 1) > C_OVER_A_TOLERANCE:
        return f"has c/a = {c / a:.3f}, more than {C_OVER_A_TOLERANCE:.1%} from alpha-Ti's"
    return None


def select_phases(
    phases: Mapping[int, Phase],
    present: Mapping[int, int] | None,
    forced: int | None,
    path: Path,
) -> set[int] | None:
    """The phase ids whose pixels may be valid, refusing maps of other materials.

    Parameters
    ----------
    phases : the header's phases by id.
    present : indexed pixel count per phase id of the data (None when the file has no phase
        column): a declared phase that holds no pixel is harmless and never refused.
    forced : a phase id the caller insists on (``phase=`` of the readers): accepted with a
        warning when it is not alpha-Ti; every other phase's pixels become invalid.
    path : the file, for messages.

    Returns
    -------
    set of accepted ids, or None to accept every id (a header without phase information).

    Raises
    ------
    ValueError
        No hexagonal phase at all, or a phase holding indexed pixels is not alpha-Ti.
    """
    if forced is not None:
        problem = alpha_ti_problem(phases[forced]) if forced in phases else None
        if problem:
            warnings.warn(
                f"{path}: {phases[forced].describe()} {problem} ({_ALPHA_TI_TEXT}); used anyway "
                f"because phase={forced} was given",
                stacklevel=3,
            )
        return {forced}
    if not phases:
        return None
    if not any(p.hexagonal is not False for p in phases.values()):
        listed = "; ".join(p.describe() for p in phases.values())
        raise ValueError(
            f"{path}: no hexagonal phase in the header ({listed}); ebsdray models alpha-Ti "
            "(Symmetry 62). Pass phase=<id> to force one."
        )
    if present is not None and len(phases) == 1:
        (only,) = phases  # a single-phase file may number its phase column 0 or 1
        present = {only: present.get(only, 0) + (present.get(0, 0) if only != 0 else 0)}
    used = {k: p for k, p in phases.items() if present is None or present.get(k, 0) > 0}
    refused = [(p, alpha_ti_problem(p)) for p in used.values()]
    refused = [(p, why) for p, why in refused if why]
    if refused:
        listed = "; ".join(
            f"{p.describe()} {why}" + (f", {present[p.id]} indexed pixels" if present else "")
            for p, why in refused
        )
        raise ValueError(
            f"{path}: {listed}. ebsdray's prior and PL model are for {_ALPHA_TI_TEXT} only. "
            "If the map also has an alpha-Ti phase, pass phase=<its id> (pixels of the other "
            "phases then become invalid, i.e. unobserved)."
        )
    for p in used.values():
        # Without lattice parameters only the name can tell; "Titanium (Alpha)" is evidence enough.
        if p.lattice is None and p.hexagonal is not False and "titan" not in p.name.lower():
            warnings.warn(
                f"{path}: {p.describe()} gives no lattice parameters; assumed to be alpha-Ti",
                stacklevel=3,
            )
    accepted = {k for k, p in phases.items() if alpha_ti_problem(p) is None}
    if len(phases) == 1:
        accepted.add(0)  # single-phase OIM files often number the phase column from 0
    return accepted
