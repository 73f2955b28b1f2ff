"""The configurations of a sweep: blocks of volumes x seeds x models x EBSD fractions x patterns
x PL settings, expanded to the ones that make sense and deduplicated.

    configs = expand_plan(plan, volumes, pl_settings, models)   # [Config, ...]

A plan (``configs/size/*.yaml``) names the K values (``samples``; the largest is drawn, the
others are prefixes of the same samples), default ``seeds`` and ``blocks``; each block lists
``volumes``, ``models``, ``fractions``, ``patterns``, ``pl`` (PL setting names) and optionally its
own ``seeds``. Rules that keep the grid honest and cheap:

- fraction 0 is pattern ``none``; fraction 1 is the full map (``grid``; random would be the same);
- the PL model sees no EBSD: it runs at fraction 0 only;
- the EBSD model sees no PL: it runs at fractions > 0, under the plain PL setting ``none`` only;
- every distinct observation also gets one ``baselines`` configuration (Sobel on the observed PL,
  nearest / bilinear upsampling of the observed EBSD): no samples, computed once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ebsdray.conventions import VARIANTS
from ebsdray.observation import ObservationSpec

BASELINES = "baselines"
PLAIN_PL = "none"  # the PL setting the EBSD model runs under (it ignores PL)
BLOCK_KEYS = {"volumes", "models", "fractions", "patterns", "pl", "seeds"}


@dataclass(frozen=True)
class Config:
    """One configuration: a sample set (or the baselines) of one observation of one volume.

    Attributes
    ----------
    volume : a volume name (key of the sweep's ``volumes``).
    seed : seeds the observation and the posterior samples (``ebsdray.observe`` and
        ``ebsdray.reconstruct`` take the same seed, as in the main job).
    model : ``multimodal``, ``pl``, ``ebsd`` or ``baselines``.
    fraction : share of pixels with EBSD.
    pattern : ``grid``, ``random`` or ``none``.
    pl : PL setting name (key of the sweep's ``pl_settings``).
    """

    volume: str
    seed: int
    model: str
    fraction: float
    pattern: str
    pl: str

    @property
    def label(self) -> str:
        return (
            f"{self.model} f={self.fraction:g} {self.pattern} pl={self.pl} {self.volume} "
            f"seed={self.seed}"
        )

    def observation_key(self) -> tuple:
        return (self.volume, self.seed, self.fraction, self.pattern, self.pl)


def fingerprint(facts: Mapping[str, Any]) -> str:
    """A short stable hash of everything that defines a configuration's results."""
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def effective_pattern(fraction: float, pattern: str) -> str | None:
    """The pattern a (fraction, pattern) pair really is; None when the pair is not a config."""
    if pattern not in ("grid", "random", "none"):
        raise ValueError(f"unknown pattern {pattern!r}; choose grid, random or none")
    if fraction == 0:
        return "none"
    if pattern == "none":
        return None
    return "grid" if fraction == 1 else pattern


def _model_config(model: str, fraction: float, pl: str) -> tuple[str, str] | None:
    """(model, PL setting) of a block entry, or None where the model cannot use the fraction."""
    if model == "pl" and fraction > 0:
        return None
    if model == "ebsd":
        return None if fraction == 0 else (model, PLAIN_PL)
    return model, pl


def _check_block(name: str, block: Mapping[str, Any], known: dict[str, Iterable[str]]) -> None:
    unknown = set(block) - BLOCK_KEYS
    if unknown:
        raise ValueError(f"plan block {name!r}: unknown keys {sorted(unknown)}; known {BLOCK_KEYS}")
    for key, names in known.items():
        bad = [v for v in block.get(key, []) if v not in names]
        if bad:
            raise ValueError(f"plan block {name!r}: unknown {key} {bad}; known {sorted(names)}")
    for f in block.get("fractions", []):
        if not (isinstance(f, int | float) and 0 <= f <= 1 and math.isfinite(f)):
            raise ValueError(f"plan block {name!r}: EBSD fraction {f!r} is not in [0, 1]")


def check_samples(samples: Iterable[int]) -> list[int]:
    """The sorted K values of a plan (positive integers)."""
    ks = sorted({int(k) for k in samples})
    if not ks or ks[0] < 1:
        raise ValueError(f"plan.samples must be positive integers; got {list(samples)}")
    return ks


def expand_plan(
    plan: Mapping[str, Any],
    volumes: Mapping[str, Any],
    pl_settings: Mapping[str, Any],
    models: Mapping[str, Any],
) -> list[Config]:
    """Every configuration of ``plan`` (model configurations, then the baselines of each
    distinct observation), in a stable order without duplicates.

    Raises
    ------
    ValueError : unknown block keys, volumes, models or PL settings; a fraction outside [0, 1];
        a grid fraction that is not 1/s^2.
    """
    bad_models = set(models) - set(VARIANTS)
    if bad_models:
        raise ValueError(f"models must be named by variant {VARIANTS}; got {sorted(bad_models)}")
    if PLAIN_PL not in pl_settings:
        raise ValueError(f"pl_settings must define {PLAIN_PL!r} (the plain PL setting)")
    check_samples(plan["samples"])
    known = {"volumes": volumes, "models": models, "pl": pl_settings}
    out: dict[Config, None] = {}
    for name, block in plan["blocks"].items():
        _check_block(name, block, known)
        for volume in block["volumes"]:
            for seed in block.get("seeds", plan.get("seeds", [0])):
                for model in block["models"]:
                    for fraction in block["fractions"]:
                        for pattern in block.get("patterns", ["grid"]):
                            for pl in block.get("pl", [PLAIN_PL]):
                                cfg = _config(volume, seed, model, fraction, pattern, pl)
                                if cfg is not None:
                                    out[cfg] = None
    configs = list(out)
    seen: dict[tuple, None] = {}
    for c in configs:
        seen.setdefault(c.observation_key(), None)
    baselines = [Config(v, s, BASELINES, f, p, pl) for (v, s, f, p, pl) in seen]
    return configs + baselines


def _config(
    volume: str, seed: int, model: str, fraction: float, pattern: str, pl: str
) -> Config | None:
    fraction = float(fraction)
    real = effective_pattern(fraction, str(pattern))
    picked = _model_config(str(model), fraction, str(pl))
    if real is None or picked is None:
        return None
    ObservationSpec(ebsd_fraction=fraction, pattern=real)
    if real == "grid" and 0 < fraction < 1:  # every s-th row and column: 1/s^2
        s = round(1 / math.sqrt(fraction))
        if not math.isclose(fraction, 1 / s**2, rel_tol=1e-6):
            raise ValueError(
                f"a grid EBSD fraction must be 1/s^2 (1/4, 1/9, 1/16, ...); got {fraction:g} "
                f"(nearest: 1/{s * s}); use pattern random for other fractions"
            )
    return Config(str(volume), int(seed), picked[0], fraction, real, picked[1])


def config_facts(cfg: Config, context: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that defines ``cfg``'s results (its fingerprint's input): the configuration,
    the volume spec, the PL setting and, for models, the model source, sampler, K values and
    precision (``context`` holds the sweep's resolved settings)."""
    facts = {
        "config": asdict(cfg),
        "volume": context["volumes"][cfg.volume],
        "pl_setting": context["pl_settings"][cfg.pl],
    }
    if cfg.model != BASELINES:
        facts |= {
            "model_source": str(context["models"][cfg.model]),
            "sampler": context["sampler"],
            "samples": context["samples"],
            "precision": context["precision"],
        }
    return facts
