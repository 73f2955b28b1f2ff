"""How close can EBSD 1/4 come to full EBSD in boundary Chamfer? An observer's bound.

    .venv/bin/python bench/border_limit.py                   # test volumes 7101, 7102 (10 s)
    .venv/bin/python bench/border_limit.py --volumes validation
    .venv/bin/python bench/border_limit.py --sections 16 --reconstruct   # 7102 beside it (30 min)

The issue's target "1/4 within 1.15x of full EBSD" asks a 1/4 grid (every other pixel in both
directions) to place borders as well as a full map. Where two neighbouring grains differ in the
PL, the PL places their border to the pixel. Where they share a c-axis (macrozones), the PL is
blind, and a pixel between an observation of A and one of B may be either.

This script scores an observer that knows more than any reconstruction: the true grain of every
pixel (grains as full EBSD sees them: true grains joined across borders under the grain
tolerance), except the *blind pixels*, the unobserved pixels between observations of two grains
whose mean clean PL differs by less than 2 noise levels (``--snr`` 4 is the squared ratio;
generous: a pixel of two grains 2 noise levels apart is still misread one time in six). Two ways
to place the blind pixels:

- ``coin``: a coin flip.
- ``line``: the likelier side of a straight border between the observations of A and B (a
  section through Laguerre cells has one straight border per pair of grains), over all straight
  lines that separate them (uniform prior on angle and offset; :func:`own_side_probability`),
  a coin flip at even odds: the best an observer who knows the border is straight can do.
- ``known``: as ``line``, but the line must separate every pixel of A and of B the observer is
  given (all but the blind ones), not only their observations: more than any reconstruction
  knows, since the PL does not show the border between A and B.

It prints, per section, the boundary Chamfer of full EBSD (the merged truth) and of the
observers (mean over ``--draws`` coin draws), and their ratios. ``--reconstruct`` adds the
default reconstruction (fp32, the quality report's observations) at 1/4 and full EBSD on the same
sections of the macrozone volume, the one with borders under the tolerance; otherwise nothing is
sampled and the reconstruction's own numbers are in ``docs/quality/``. Synthetic volumes only: it
needs the true grains and the clean PL. Writes nothing.

The ratio is a ratio to a small number: where full EBSD is nearly exact (every grain differs
from its neighbours by more than the tolerance), a few blind pixels make it large. Two sections
are not enough to judge it; ``--sections`` sets how many.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import ebsdray
from ebsdray.aggregate.boundaries import DEFAULT_THRESHOLD_DEG
from ebsdray.aggregate.grains import fill_between_observations, merge_agreeing
from ebsdray.conventions import EBSD_CHANNELS
from ebsdray.experiments.volumes import (
    MORE_VALIDATION_SEEDS,
    TEST_VOLUMES,
    VALIDATION_SEEDS,
    held_out_volume,
    validation_volume,
)
from ebsdray.metrics.boundaries import chamfer, grain_boundaries

TARGET = 1.15
OBSERVERS = ("coin", "line", "known")


def merged_grains(
    grain_ids: np.ndarray, quaternions: np.ndarray, tolerance_deg: float
) -> np.ndarray:
    """(H, W) labels (1, 2, ...; 0 means unindexed to the metrics) of the grains full EBSD sees:
    touching true grains (H, W) whose orientations (H, W, 4; one per grain) differ by less than
    the tolerance are one grain."""
    ids = np.unique(grain_ids, return_inverse=True)[1].reshape(grain_ids.shape) + 1
    q = np.zeros((ids.max() + 1, 4))
    q[ids.ravel()] = quaternions.reshape(-1, 4)
    return merge_agreeing(ids, q, tolerance_deg, max_size=ids.size)  # grains of any size


def between_pixels(grains: np.ndarray, observed: np.ndarray) -> list[tuple[int, int, int]]:
    """(i, j, other) for each unobserved pixel between an observation of its own grain and one of
    grain ``other`` (its 8 neighbours), once per other grain; pixels between two observations of
    one grain are placed, and a pixel of a grain between the grid points is given."""
    _, placed = fill_between_observations(np.where(observed, grains, 0), observed)
    seen = np.pad(np.where(observed, grains, -1), 1, constant_values=-1)
    out = []
    for i, j in np.argwhere(~observed & ~placed):
        around = {int(g) for g in seen[i : i + 3, j : j + 3].ravel() if g >= 0}
        if grains[i, j] in around:
            out += [(int(i), int(j), g) for g in sorted(around - {grains[i, j]})]
    return out


def grain_mean(grains: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(G + 1, C) mean of the image (C, H, W) over each grain (H, W; labels 1..G)."""
    count = np.maximum(np.bincount(grains.ravel()), 1)
    return np.stack([np.bincount(grains.ravel(), c.ravel()) / count for c in image], axis=1)


def own_side_probability(own: np.ndarray, other: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(X,) probability that each pixel (X, 2) lies on the side of ``own`` (M, 2) observations,
    over the straight lines that separate them from the ``other`` (N, 2) observations, under a
    uniform prior on the line's angle and offset: the best any observer can do who knows only
    that the border is straight. NaN where no line separates them.

    For a unit normal n at each of 3600 angles, the separating offsets c (n.own > c > n.other)
    form the interval (max n.other, min n.own); the pixel is on own's side for the part of it
    below n.pixel.
    """
    angle = (np.arange(3600) + 0.5) * (2 * np.pi / 3600)
    normal = np.stack([np.cos(angle), np.sin(angle)])  # (2, T)
    low, high = (other @ normal).max(axis=0), (own @ normal).min(axis=0)
    width = np.clip(high - low, 0, None)
    if not width.any():
        return np.full(len(pixels), np.nan)
    return np.clip(pixels @ normal - low, 0, width).sum(axis=1) / width.sum()


def line_probabilities(
    ids: np.ndarray,
    grains: np.ndarray,
    observed: np.ndarray,
    between: list[tuple[int, int, int]],
    support: np.ndarray | None = None,
) -> np.ndarray:
    """(len(between),) :func:`own_side_probability` of each (i, j, other), for the border between
    the true grains (ids) of the pixel's observed neighbours in its own grain and in ``other``
    (0.5 where no straight line separates them). The line separates those grains' pixels in
    ``support`` ((H, W) bool; default: the observed ones)."""
    merged = dict(zip(ids.ravel().tolist(), grains.ravel().tolist(), strict=True))
    by_border: dict[tuple[int, int], list[int]] = {}
    for k, (i, j, other) in enumerate(between):
        window = np.s_[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
        seen = sorted(set(ids[window][observed[window]].tolist()), key=lambda t: t != ids[i, j])
        key = tuple(next(t for t in seen if merged[t] == g) for g in (grains[i, j], other))
        by_border.setdefault(key, []).append(k)
    support = observed if support is None else support
    p = np.full(len(between), 0.5)
    for (a, b), ks in by_border.items():
        own, other = np.argwhere(support & (ids == a)), np.argwhere(support & (ids == b))
        pixels = np.array([between[k][:2] for k in ks], float)
        p[ks] = np.nan_to_num(own_side_probability(own, other, pixels), nan=0.5)
    return p


def observer_chamfers(section, tolerance_deg: float, snr: float, draws: int, rng) -> dict:
    """Boundary Chamfer of full EBSD and of the observers (mean over ``draws`` coin draws for the
    ties) on one observed section."""
    truth = section.truth
    ids, q = np.asarray(truth.grain_ids[0]), np.asarray(truth.quaternions[0])
    true_b = grain_boundaries(ids)
    grains = merged_grains(ids, q, tolerance_deg)
    observed = section.observation.mask[:EBSD_CHANNELS].all(0).numpy()
    noise = float(section.observation.sigma[EBSD_CHANNELS:].mean())
    mean = grain_mean(grains, section.clean[EBSD_CHANNELS:].numpy())
    between = between_pixels(grains, observed)
    i, j, other = (np.array(v, int) for v in zip(*between, strict=True))
    own = grains[i, j]
    blind = ((mean[own] - mean[other]) ** 2).sum(axis=1) < snr * noise**2
    given = np.ones_like(observed)
    given[i[blind], j[blind]] = False
    line = line_probabilities(ids, grains, observed, between)
    known = line_probabilities(ids, grains, observed, between, support=given)
    out = {"full": chamfer(grain_boundaries(grains), true_b)["bidirectional"]}
    out["blind"] = len({(a, b) for a, b, lost in zip(i, j, blind, strict=True) if lost})
    scores = {name: [] for name in OBSERVERS}
    for _ in range(draws):
        coin = rng.random(len(between)) < 0.5
        loses = {  # (len(between),) bool: the pixel goes to ``other``
            "coin": blind & coin,
            "line": blind & ((line < 0.5) | ((line == 0.5) & coin)),
            "known": blind & ((known < 0.5) | ((known == 0.5) & coin)),
        }
        for name, lose in loses.items():
            guess = grains.copy()
            guess[i[lose], j[lose]] = other[lose]  # a pixel lost to two grains takes the last
            scores[name].append(chamfer(grain_boundaries(guess), true_b)["bidirectional"])
    return out | {name: float(np.mean(v)) for name, v in scores.items()}


def reconstruction_chamfers(model, volume, fraction: float) -> list[tuple[float, float]]:
    """Per-section boundary Chamfer of the default reconstruction (K = 8, fp32) from the same
    observations the observers see (EBSD on a grid, PL noise 0.05, seed 0), and of Sobel on the
    observed PL (the baseline)."""
    observed = ebsdray.observe(volume, ebsd_fraction=fraction, seed=0, pl_noise=0.05)
    placement = ebsdray.Placement(
        resources=ebsdray.ReplicaResources(threads=torch.get_num_threads())
    )
    result = ebsdray.reconstruct(observed, model, seed=0, precision="fp32", placement=placement)
    return [(r["metrics"]["chamfer"], r["metrics"]["sobel_chamfer"]) for r in result.records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", choices=("test", "validation"), default="test")
    parser.add_argument("--snr", type=float, default=4.0, help="squared PL contrast, noise^2")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--sections", type=int, default=2, help="64 x 64 sections per volume")
    parser.add_argument(
        "--reconstruct", action="store_true", help="the default reconstruction of synthetic_7102 "
        "at 1/4 and full EBSD beside the observers (about 2 min per section on 2 cores)"
    )  # fmt: skip
    args = parser.parse_args()
    model = ebsdray.load_model("multimodal")
    if args.volumes == "test":
        volumes = {name: held_out_volume(name, args.sections) for name in TEST_VOLUMES}
    else:
        seeds = (*VALIDATION_SEEDS, *MORE_VALIDATION_SEEDS)
        volumes = {f"validation {s}": validation_volume(s, args.sections) for s in seeds}
    rng = np.random.default_rng(0)
    print("| volume | section | blind pixels | full EBSD | " + " | ".join(OBSERVERS) + " |")
    print("|---|---|---|---|" + "---|" * len(OBSERVERS))
    rows = []
    for name, volume in volumes.items():
        observed = ebsdray.observe(volume, ebsd_fraction=0.25, seed=0, pl_noise=0.05)
        for z in range(volume.shape[0]):
            section = observed.section(z, model.codec)
            r = observer_chamfers(section, DEFAULT_THRESHOLD_DEG, args.snr, args.draws, rng)
            scores = " | ".join(f"{r[o]:.4f}" for o in OBSERVERS)
            print(f"| {name} | {z} | {r['blind']} | {r['full']:.4f} | {scores} |", flush=True)
            rows.append((name, r))
        if args.reconstruct and name == "synthetic_7102":
            quarter, full = (reconstruction_chamfers(model, volume, f) for f in (0.25, 1.0))
            print("\n| section | reconstruction: full EBSD | 1/4 | Sobel |\n|---|---|---|---|")
            for z, ((f, _), (q, sobel)) in enumerate(zip(full, quarter, strict=True)):
                print(f"| {z} | {f:.4f} | {q:.4f} | {sobel:.4f} |")
            (f, _), (q, sobel) = np.mean(full, axis=0), np.mean(quarter, axis=0)
            print(f"mean: full {f:.4f}, 1/4 {q:.4f} ({q / f:.2f}x), Sobel {sobel:.4f}\n")
    groups = {name: [r for n, r in rows if n == name] for name in dict.fromkeys(n for n, _ in rows)}
    if len(groups) > 2:
        groups["all"] = [r for _, r in rows]
    print(f"\nMeans, and ratios to full EBSD (target {TARGET}x):")
    for name, group in groups.items():
        full = np.mean([r["full"] for r in group])
        scores = []
        for o in OBSERVERS:
            score = np.mean([r[o] for r in group])
            scores.append(f"{o} {score:.4f}" + (f" ({score / full:.2f}x)" if full else ""))
        print(f"{name}: full EBSD {full:.4f}; " + ", ".join(scores))


if __name__ == "__main__":
    main()
