"""One section's posterior: the unit of work that runs in-process or on a Ray replica.

    samples, info = sample_section(model, section, sampler, seed, range(8))  # (8, C, H, W)
    stats = convergence_sums(samples, model.variant)                      # adaptive budgets
    result = merge_section(section, samples, model.codec, model.variant)  # task outputs
    metrics = section_metrics(result, section, model.codec)               # vs ground truth

Every posterior sample ``k`` of section ``d`` draws from ``SeedSequence([seed, d, k])`` and its
particles (x tiles) are their own network calls, whose shapes depend on the section and sampler
only: a section's samples are bitwise identical however they are split over requests and
replicas, in fp32 and in bf16.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ebsdray.aggregate import aggregate
from ebsdray.aggregate.baselines import ebsd_baselines, sobel_baseline
from ebsdray.aggregate.boundaries import DEFAULT_THRESHOLD_DEG, edge_maps
from ebsdray.conventions import EBSD_CHANNELS, ChannelLayout
from ebsdray.data._arrays import as_numpy
from ebsdray.data.codec import ChannelCodec
from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.inverse._common import SIGMA_FLOOR, plan_levels
from ebsdray.inverse.baseline import replacement_sampler
from ebsdray.inverse.fps_smc import fps_smc, sample_generators
from ebsdray.inverse.guided import guided_chain, guided_sampler, warm_start_estimate
from ebsdray.inverse.tiling import TiledDenoiser
from ebsdray.metrics import blurred_bce, chamfer, disorientation_stats, grain_boundaries, psnr
from ebsdray.observation import ObservedSection
from ebsdray.precision import resolve_precision

SAMPLERS = ("guided", "fps_smc", "replacement")


def _check_count(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{owner}.{name} must be an integer >= 1; got {value!r}")


@dataclass(frozen=True)
class SamplerSpec:
    """How one posterior sample is drawn: all a replica needs besides the section and the seed.

    ``SamplerSpec()`` is the default guided sampler; ``SamplerSpec("fps_smc", steps=50,
    particles=4)`` the paper's FPS-SMC.

    Attributes
    ----------
    name : "guided" (default: residual guidance with a warm start,
        :mod:`ebsdray.inverse.guided`), "fps_smc" (the paper's FPS-SMC) or "replacement"
        (cheap baseline: N evaluations per sample).
    steps : N, respaced diffusion steps per sample (guided: over the part of the chain that
        runs; each step is one forward and one backward pass).
    particles : M, SMC particles per sample (FPS-SMC only); cost N * M network evaluations per
        sample.
    ebsd_guidance, pl_guidance : guided only: weight of each modality's likelihood gradient.
    warm_start_t : guided only: the timestep (of 1000) a warm start from the nearest-upsampled
        observation is diffused to, used when every channel has observed entries; None: always
        start from pure noise.
    """

    name: str = "guided"
    steps: int = 30
    particles: int = 4
    ebsd_guidance: float = 10.0
    pl_guidance: float = 1.0
    warm_start_t: int | None = 400

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {self.name!r} (SamplerSpec.name); choose one of {SAMPLERS}"
            )
        for name in ("steps", "particles"):
            _check_count("SamplerSpec", name, getattr(self, name))
        if self.steps > 1000:
            raise ValueError(
                f"SamplerSpec.steps must be <= 1000 (the training schedule); got {self.steps}"
            )
        for name in ("ebsd_guidance", "pl_guidance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"SamplerSpec.{name} must be a finite number >= 0; got {value!r}")
        if self.warm_start_t is not None and not 0 < self.warm_start_t < 1000:
            raise ValueError(
                f"SamplerSpec.warm_start_t must be in (0, 1000) or None; got {self.warm_start_t!r}"
            )

    @property
    def evaluations_per_sample(self) -> int:
        """N * M (FPS-SMC) or N network evaluations per sample before the sampler's fine tail
        (guided: each with one backward pass too)."""
        return self.steps * (self.particles if self.name == "fps_smc" else 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": int(self.steps),
            "particles": int(self.particles),
            "ebsd_guidance": float(self.ebsd_guidance),
            "pl_guidance": float(self.pl_guidance),
            "warm_start_t": None if self.warm_start_t is None else int(self.warm_start_t),
        }


@dataclass(frozen=True)
class Budget:
    """How many posterior samples a reconstruction draws per section, and with which sampler:
    what the driver decides (replicas get only ``sampler``).

    Fixed: ``Budget(samples=8)`` draws K = 8 posterior samples per section (``per_section``
    overrides K for some sections). Adaptive: ``Budget(samples=4, max_samples=32)`` draws rounds
    of ``samples`` until the section's aggregate stops changing (the mean absolute change of the
    boundary confidence and of the EBSD channel mean between rounds both at most ``tolerance``)
    or ``max_samples`` are drawn; easy sections stop early, hard ones get more.

    Attributes
    ----------
    samples : K (fixed), or the round size (adaptive).
    sampler : how each sample is drawn (:class:`SamplerSpec`; default the guided sampler).
    per_section : optional ``{section: K}`` overriding ``samples`` for some sections.
    max_samples : None (fixed K) or the adaptive cap.
    tolerance : adaptive stopping tolerance (boundary confidence is in [0, 1], EBSD channels in
        [-1, 1]).
    """

    samples: int = 8
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    per_section: Mapping[int, int] = field(default_factory=dict)
    max_samples: int | None = None
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        _check_count("Budget", "samples", self.samples)
        if not isinstance(self.sampler, SamplerSpec):
            raise TypeError(
                f"Budget.sampler must be a SamplerSpec; got {type(self.sampler).__name__} "
                f"{self.sampler!r}"
            )
        bad = {k: v for k, v in self.per_section.items() if int(v) < 1}
        if bad:
            raise ValueError(f"per-section sample counts must be >= 1; got {bad}")
        if self.max_samples is not None and (
            not isinstance(self.max_samples, int | np.integer) or self.max_samples < self.samples
        ):
            raise ValueError(
                f"Budget.max_samples must be an integer >= samples ({self.samples}) or None; "
                f"got {self.max_samples!r}"
            )
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"Budget.tolerance must be > 0; got {self.tolerance!r}")

    @property
    def adaptive(self) -> bool:
        return self.max_samples is not None

    def samples_for(self, section: int) -> int:
        """K (fixed) or the round size (adaptive) for ``section``."""
        return int(self.per_section.get(section, self.samples))

    def max_samples_for(self, section: int) -> int:
        """The most samples ``section`` may get."""
        k = self.samples_for(section)
        return max(k, int(self.max_samples)) if self.adaptive else k

    def network_evaluations(self, section: int) -> int:
        """N * M * K (FPS-SMC) or N * K for ``section`` before the sampler's fine tail; with an
        adaptive budget, the most it may spend."""
        return self.sampler.evaluations_per_sample * self.max_samples_for(section)

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``Budget.from_dict`` rebuilds the budget."""
        return {
            "samples": int(self.samples),
            "sampler": self.sampler.to_dict(),
            "per_section": {int(k): int(v) for k, v in self.per_section.items()},
            "max_samples": None if self.max_samples is None else int(self.max_samples),
            "tolerance": float(self.tolerance),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Budget:
        """The budget of :meth:`to_dict` (the sampler as a dict of SamplerSpec fields)."""
        values = dict(values)
        sampler = SamplerSpec(**values.pop("sampler", {}))
        return cls(sampler=sampler, **values)


@dataclass
class SectionResult:
    """The task outputs of one section (arrays are numpy).

    Attributes
    ----------
    index : section index.
    boundary : (H, W) bool grain boundaries; None for the EBSD-only model.
    boundary_confidence : (H, W) in [0, 1], the share of the K samples that mark a boundary.
    ebsd_quaternions : (H, W, 4) super-resolved orientations; None for the PL-only model.
    pl_denoised : (C_PL, H, W) denoised PL channels; None for the EBSD-only model.
    uncertainty : per-pixel maps (``boundary_variance``, ``ebsd_spread_deg``, ``pl_std``).
    samples : (K, C, H, W) raw posterior samples when requested, else None.
    info : sampler facts (``samples``, ``network_evaluations``, ``seconds``, ``mean_ess``,
        ``rounds``).
    """

    index: int
    boundary: np.ndarray | None
    boundary_confidence: np.ndarray | None
    ebsd_quaternions: np.ndarray | None
    pl_denoised: np.ndarray | None
    uncertainty: dict[str, np.ndarray]
    samples: np.ndarray | None
    info: dict[str, Any]


def sample_section(
    model: DiffusionModel,
    section: ObservedSection,
    sampler: SamplerSpec,
    seed: int,
    sample_indices: Sequence[int],
    *,
    precision: str = "auto",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Draw the posterior samples ``sample_indices`` of one section with ``sampler``.

    ``precision`` ("auto", "fp32", "bf16") is resolved on the model's device
    (:func:`ebsdray.precision.resolve_precision`).

    Returns
    -------
    samples : (k, C, H, W) float32 on the CPU.
    info : ``network_evaluations``, ``precision`` (the one used) and, for FPS-SMC, ``ess`` (per
        step and run).
    """
    obs = section.observation.for_variant(model.variant)
    if obs.channels != model.channels:
        raise ValueError(
            f"the observation has {obs.channels} channels but the {model.variant!r} model takes "
            f"{model.channels}; observe with the model's codec"
        )
    h, w = obs.shape[1:]
    denoiser = (
        model.net
        if (h, w) == (model.window, model.window)
        else TiledDenoiser(model.net, model.window)
    )
    device = next(model.net.parameters()).device
    precision = resolve_precision(precision, device)
    gens = sample_generators(seed, section.index, list(sample_indices), device=device)
    obs = obs.to(device)
    if sampler.name == "fps_smc":
        samples, info = fps_smc(
            denoiser,
            model.schedule,
            obs,
            gens,
            num_steps=sampler.steps,
            particles=sampler.particles,
            precision=precision,
        )
    elif sampler.name == "guided":
        start_t = _warm_start_t(sampler, obs)
        weights = [sampler.ebsd_guidance] * obs.ebsd_channels + [
            sampler.pl_guidance
        ] * obs.pl_channels
        samples, info = guided_sampler(
            denoiser,
            model.schedule,
            obs,
            gens,
            num_steps=sampler.steps,
            guidance=weights,
            start_from=None if start_t is None else warm_start_estimate(obs),
            start_t=start_t,
            precision=precision,
        )
    else:
        samples, info = replacement_sampler(
            denoiser, model.schedule, obs, gens, num_steps=sampler.steps, precision=precision
        )
    info["precision"] = precision
    return samples.float().cpu(), info


def _warm_start_t(sampler: SamplerSpec, obs) -> int | None:
    """The guided chain's warm-start timestep: only when every channel has observed entries
    (an estimate of a channel with none would be made up)."""
    every_channel_observed = bool((obs.mask.flatten(1).amax(1) > 0).all())
    return sampler.warm_start_t if every_channel_observed else None


def planned_steps(model: DiffusionModel, section: ObservedSection, sampler: SamplerSpec) -> int:
    """Network calls per posterior sample of ``section`` (the sampler's whole plan: pinned
    levels and fine tail of FPS-SMC; the warm-started part of a guided chain)."""
    obs = section.observation.for_variant(model.variant)
    if sampler.name == "guided":
        return len(guided_chain(model.schedule, sampler.steps, _warm_start_t(sampler, obs)))
    tail = max(sampler.steps // 4, 1) if sampler.name == "fps_smc" else 0
    return len(
        plan_levels(model.schedule, sampler.steps, obs.sigma, True, SIGMA_FLOOR, tail).timesteps
    )


def probe_sample_cost(
    model: DiffusionModel,
    section: ObservedSection,
    sampler: SamplerSpec,
    *,
    precision: str = "auto",
    probe_steps: int = 3,
) -> dict[str, Any]:
    """What one posterior sample of ``section`` costs, measured here with a short probe.

    Runs ``sampler`` for one sample with ``probe_steps`` steps (after an untimed
    warm-up run) and scales the time per step to the full plan (:func:`planned_steps`).

    Returns
    -------
    dict: ``steps``, ``particles`` and ``tiles`` (windows of one network call: particles x
    tiles), ``network_evaluations`` (steps x particles per sample, as the samplers count them;
    guided steps also run backward), ``seconds_per_sample`` (estimate), ``precision``.
    """
    obs = section.observation.for_variant(model.variant)
    h, w = obs.shape[1:]
    tiles = len(TiledDenoiser(model.net, model.window).layout(h, w)[0])
    probe = replace(sampler, steps=probe_steps)
    sample_section(model, section, probe, 0, [0], precision=precision)  # warm-up: allocations
    t0 = time.perf_counter()
    _, info = sample_section(model, section, probe, 0, [0], precision=precision)
    per_step = (time.perf_counter() - t0) / max(int(info["num_steps"]), 1)
    steps = planned_steps(model, section, sampler)
    particles = sampler.particles if sampler.name == "fps_smc" else 1
    return {
        "steps": steps,
        "particles": particles,
        "tiles": tiles,
        "network_evaluations": steps * particles,
        "seconds_per_sample": steps * per_step,
        "precision": info["precision"],
    }


def convergence_sums(samples: Any, variant: str) -> np.ndarray:
    """Sums over samples of what adaptive budgets watch: the normalized Sobel edge map of the PL
    (a smooth measure of where the samples put edges, summable unlike the thresholded boundary
    evidence) and the EBSD channels.

    Parameters
    ----------
    samples : (k, C, H, W) channels of ``variant``.

    Returns
    -------
    (S, H, W) float64 with S = 1 (edge map, if PL) + 3 (EBSD channels, if EBSD); summable over
    requests, so a section's running means need no samples in the driver.
    """
    x = as_numpy(samples, np.float64)
    # Without the codec C_PL is unknown, but the PL channels are all those from where they start.
    layout = ChannelLayout(variant, pl_channels=0)
    parts = []
    if layout.has_pl:
        parts.append(edge_maps(x[:, layout.pl.start :]).sum(axis=0)[None])
    if layout.has_ebsd:
        parts.append(x[:, layout.ebsd].sum(axis=0))
    return np.concatenate(parts)


def aggregate_change(previous_mean: np.ndarray, mean: np.ndarray, variant: str) -> float:
    """Largest mean absolute change, between two rounds, of the boundary confidence and the EBSD
    channel mean ((S, H, W) running means of :func:`convergence_sums`)."""
    diff = np.abs(mean - previous_mean)
    layout = ChannelLayout(variant, pl_channels=0)  # which modalities the rows hold
    changes = []
    if layout.has_pl:
        changes.append(float(diff[0].mean()))
    if layout.has_ebsd:
        changes.append(float(diff[-EBSD_CHANNELS:].mean()))
    return max(changes)


def merge_section(
    section: ObservedSection,
    samples: torch.Tensor | np.ndarray,
    codec: ChannelCodec,
    variant: str,
    *,
    keep_samples: bool = False,
    info: dict[str, Any] | None = None,
    seed: int = 0,
    grain_tolerance_deg: float = DEFAULT_THRESHOLD_DEG,
) -> SectionResult:
    """Merge one section's (K, C, H, W) samples into its task outputs (:func:`aggregate`, whose
    ``grain_tolerance_deg`` it passes on).

    Needs the model's codec and variant only, not its network: it runs in aggregation tasks.
    """
    obs = section.observation.for_variant(variant)
    out = aggregate(
        samples, codec, observed=obs.y, mask=obs.mask, variant=variant, seed=seed,
        grain_tolerance_deg=grain_tolerance_deg,
    )  # fmt: skip

    def f32(a):  # outputs are float32, in memory as in the store
        return None if a is None else np.asarray(a, np.float32)

    return SectionResult(
        index=section.index,
        boundary=out.get("boundary"),
        boundary_confidence=f32(out.get("boundary_confidence")),
        ebsd_quaternions=f32(out.get("ebsd_quaternions")),
        pl_denoised=f32(out.get("pl_denoised")),
        uncertainty={k: f32(v) for k, v in out.get("uncertainty", {}).items()},
        samples=as_numpy(samples, np.float32) if keep_samples else None,
        info=dict(info or {}),
    )


def _boundary_metrics(prefix: str, boundary, confidence, true: np.ndarray) -> dict[str, float]:
    c = chamfer(boundary, true)
    return {
        f"{prefix}chamfer": c["bidirectional"],
        f"{prefix}chamfer_forward": c["forward"],
        f"{prefix}chamfer_backward": c["backward"],
        f"{prefix}blurred_bce": blurred_bce(confidence, true),
    }


def _ebsd_metrics(prefix: str, q: np.ndarray, truth) -> dict[str, float]:
    d = disorientation_stats(q, truth.quaternions[0], truth.grain_ids[0], valid=truth.valid[0])
    return {
        f"{prefix}disorientation_mean_deg": d["mean_deg"],
        f"{prefix}disorientation_boundary_deg": d["boundary_deg"],
    }


def section_metrics(
    result: SectionResult, section: ObservedSection, codec, prefix: str = ""
) -> dict[str, float]:
    """Metrics of one section against its ground truth, for the model and the baselines.

    The baselines (Sobel on the observed PL, nearest / bilinear upsampling of the observed EBSD,
    the noisy PL itself) are computed from the same observation, so their names differ only by
    their prefix: ``chamfer`` / ``sobel_chamfer``, ``disorientation_mean_deg`` /
    ``bilinear_disorientation_mean_deg``, ``pl_psnr`` / ``observed_pl_psnr``.
    """
    truth = section.truth
    if truth is None:
        raise ValueError(f"section {section.index} has no ground truth to evaluate against")
    true_b = grain_boundaries(truth.grain_ids[0])
    obs, data = section.observation, codec.layout()
    out: dict[str, float] = {}
    if result.boundary is not None:
        out |= _boundary_metrics(prefix, result.boundary, result.boundary_confidence, true_b)
    if result.ebsd_quaternions is not None:
        out |= _ebsd_metrics(prefix, result.ebsd_quaternions, truth)
    if result.pl_denoised is not None and section.clean is not None:
        out[f"{prefix}pl_psnr"] = psnr(
            result.pl_denoised, section.clean[data.pl].numpy(), data_range=2.0
        )
    if prefix:  # baselines once, with the main model
        return out
    sobel = sobel_baseline(obs.y[data.pl])
    out |= _boundary_metrics("sobel_", sobel["boundary"], sobel["boundary_confidence"], true_b)
    if section.clean is not None:
        observed_pl, clean_pl = obs.y[data.pl].numpy(), section.clean[data.pl].numpy()
        out["observed_pl_psnr"] = psnr(observed_pl, clean_pl, data_range=2.0)
    if obs.mask[data.ebsd].sum() > 0:
        for name, q in ebsd_baselines(obs.y, obs.mask, codec).items():
            out |= _ebsd_metrics(f"{name}_", q, truth)
    return out
