"""What the merge's grain tolerance does to the boundaries, with noise-free and noisy EBSD.

    .venv/bin/python bench/grain_tolerance.py            # ~20 min on 2 CPU cores
    .venv/bin/python bench/grain_tolerance.py --quick    # one seed, one section

On the validation volumes only (seeds 5101-5104, the ones the aggregation was tuned on; never the
test volumes): K = 8 guided samples per section in fp32 at EBSD 1, 1/4 and 1/16 (grid), PL noise
0.05, merged at grain tolerances of 5 and 2 degrees. "noisy EBSD" rotates every observed
orientation by a random angle of 1 degree rms about a random axis before sampling (the PL stays
as simulated), and scores against the noise-free truth. Prints the mean boundary Chamfer and
disorientation per setting beside the baselines from the same observation (Sobel on the PL,
nearest upsampling of the observed EBSD); writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

import ebsdray
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.experiments.volumes import VALIDATION_SEEDS, validation_volume
from ebsdray.posterior import SamplerSpec, merge_section, sample_section, section_metrics

FRACTIONS = (1.0, 0.25, 0.0625)
TOLERANCES = (5.0, 2.0)
EBSD_NOISE_DEG = 1.0


def with_noisy_ebsd(section, codec, deg: float, seed: int):
    """The section with its observed orientations rotated by ~``deg`` rms (random axes)."""
    obs = section.observation
    y = obs.y.numpy().copy()
    q = codec.decode_ebsd(np.moveaxis(y[:3], 0, -1))
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(*q.shape[:2], 3))
    angles = np.deg2rad(rng.normal(0.0, deg, q.shape[:2]))
    noisy = np.asarray(quaternion_multiply(axis_angle_to_quaternion(axes, angles), q), np.float64)
    y[:3] = np.where(obs.mask[:3].numpy() > 0, np.moveaxis(codec.encode_ebsd(noisy), -1, 0), 0)
    return dataclasses.replace(
        section, observation=dataclasses.replace(obs, y=torch.from_numpy(y.astype(np.float32)))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seed 5102, one section")
    args = parser.parse_args()
    seeds, sections = ([5102], 1) if args.quick else (list(VALIDATION_SEEDS), 2)
    model = ebsdray.load_model("multimodal")
    rows: dict[tuple[str, float, float], list[tuple[float, float]]] = {}
    for seed in seeds:
        volume = validation_volume(seed, sections)
        for fraction in FRACTIONS:
            observed = ebsdray.observe(volume, ebsd_fraction=fraction, pl_noise=0.05, seed=0)
            for z in range(sections):
                clean = observed.section(z, model.codec)
                for ebsd in ("noise-free EBSD", "noisy EBSD"):
                    section = clean if ebsd == "noise-free EBSD" else (
                        with_noisy_ebsd(clean, model.codec, EBSD_NOISE_DEG, seed * 10 + z)
                    )  # fmt: skip
                    x, _ = sample_section(
                        model, section, SamplerSpec(), 0, range(8), precision="fp32"
                    )
                    for tol in TOLERANCES:
                        r = merge_section(section, x, model.codec, model.variant,
                                          grain_tolerance_deg=tol)  # fmt: skip
                        # the truth stays noise-free; the baselines use the observation sampled
                        m = section_metrics(r, section, model.codec)
                        rows.setdefault((ebsd, fraction, tol), []).append(
                            (m["chamfer"], m["sobel_chamfer"], m["disorientation_mean_deg"],
                             m["nearest_disorientation_mean_deg"])
                        )  # fmt: skip
            print(f"seed {seed}, EBSD {fraction:g}: done", flush=True)
    print("\n| EBSD | fraction | tolerance (deg) | Chamfer | Sobel on PL | disorientation (deg) "
          "| nearest (deg) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for (ebsd, fraction, tol), v in rows.items():
        c, sobel, d, nearest = np.mean(v, axis=0)
        print(
            f"| {ebsd} | {fraction:g} | {tol:g} | {c:.3f} | {sobel:.3f} | {d:.3f} | {nearest:.3f} |"
        )


if __name__ == "__main__":
    main()
