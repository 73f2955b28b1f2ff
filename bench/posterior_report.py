"""The posterior-sampling report: one held-out synthetic slice at EBSD fractions 1, 1/4, 1/16 with
K = 1 and K = 8, for the multimodal model, the unimodal models and the baselines; and a slice of
the real Ti map with simulated PL.

Run::

    .venv/bin/python bench/posterior_report.py                    # shipped models, 64 x 64 slice
    .venv/bin/python bench/posterior_report.py --real-fractions 0.25 0.0625 --real-k 8

K = 1 is the first of the K = 8 samples (sample k is seeded by (seed, section, k)), merged alone,
so the two columns differ only by K. Prints markdown tables: Chamfer distance (px, bidirectional)
of the multimodal model, the PL model and Sobel on the observed PL; mean disorientation (deg) of
the multimodal model, the EBSD model and bilinear upsampling; seconds per posterior sample.
"""

from __future__ import annotations

import argparse

import torch

import ebsdray
from ebsdray.posterior import merge_section, section_metrics


def run(model, obs, budget, seed, ks):
    """Metrics for each K in ``ks`` from one reconstruction with max(ks) samples."""
    r = ebsdray.reconstruct(obs, model, budget, seed=seed, keep_samples=True, progress=False)
    s = r.sections[0]
    section = obs.section(0, model.codec)
    per_sample = s.info["sampling_seconds"] / s.info["samples"]
    out = {}
    for k in ks:
        merged = merge_section(section, s.samples[:k], model.codec, model.variant, seed=seed)
        out[k] = section_metrics(merged, section, model.codec) | {"s_per_sample": per_sample}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.0625])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--real-fractions", type=float, nargs="*", default=[0.25, 0.0625])
    p.add_argument("--real-k", type=int, default=8)
    for v in ("multimodal", "pl", "ebsd"):
        p.add_argument(f"--{v}", default=v, help=f"{v} model: shipped name or checkpoint path")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ks = (1, 8)
    budget = ebsdray.Budget(samples=max(ks), steps=a.steps, particles=a.particles)
    models = {v: ebsdray.load_model(getattr(a, v), variant=v) for v in ("multimodal", "pl", "ebsd")}
    # held out: a seed and texture none of the training volumes used
    vol = ebsdray.synthetic_volume(
        (1, a.size, a.size), seed=4242, grain_size=10, texture={"kind": "macrozones", "n_zones": 3}
    )
    rows = {}
    pl_only = None
    for f in a.fractions:
        obs = ebsdray.observe(vol, ebsd_fraction=f, pattern="grid", pl_noise=0.05, seed=1)
        mm = run(models["multimodal"], obs, budget, a.seed, ks)
        eb = run(models["ebsd"], obs, budget, a.seed, ks)
        if pl_only is None:  # PL is observed the same way at every EBSD fraction
            pl_only = run(models["pl"], obs, budget, a.seed, ks)
        rows[f] = {"mm": mm, "ebsd": eb, "pl": pl_only}
        print(f"fraction {f:g} done", flush=True)

    print(
        f"\nHeld-out synthetic slice {a.size} x {a.size}, grid EBSD, PL noise 0.05, N={a.steps}, M={a.particles}"
    )
    print(
        "\n| EBSD fraction | K | Chamfer multimodal | Chamfer PL model | Chamfer Sobel | "
        "disor. multimodal | disor. EBSD model | disor. bilinear | s/sample (mm, pl, ebsd) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for f, r in rows.items():
        for k in ks:
            mm, pl, eb = r["mm"][k], r["pl"][k], r["ebsd"][k]
            print(
                f"| 1/{round(1 / f):d} | {k} | {mm['chamfer']:.3f} | {pl['chamfer']:.3f} | "
                f"{mm['sobel_chamfer']:.3f} | {mm['disorientation_mean_deg']:.2f} | "
                f"{eb['disorientation_mean_deg']:.2f} | {mm['bilinear_disorientation_mean_deg']:.2f} | "
                f"{mm['s_per_sample']:.2f}, {pl['s_per_sample']:.2f}, {eb['s_per_sample']:.2f} |"
            )  # fmt: skip

    if a.real_fractions:
        real = ebsdray.read_ebsd_map(ebsdray.example_ebsd_map_path()).crop(96, 96)
        print(
            f"\nReal Ti map (pymicro), 96 x 96 crop, PL simulated with noise 0.05, K = {a.real_k}"
        )
        print(
            "\n| EBSD fraction | Chamfer multimodal | Chamfer Sobel | blurred BCE (mm / Sobel) | "
            "disor. multimodal | disor. bilinear | disor. nearest | s/sample |"
        )
        print("|---|---|---|---|---|---|---|---|")
        b = ebsdray.Budget(samples=a.real_k, steps=a.steps, particles=a.particles)
        for f in a.real_fractions:
            obs = ebsdray.observe(real, ebsd_fraction=f, pattern="grid", pl_noise=0.05, seed=1)
            m = run(models["multimodal"], obs, b, a.seed, (a.real_k,))[a.real_k]
            print(
                f"| 1/{round(1 / f):d} | {m['chamfer']:.3f} | {m['sobel_chamfer']:.3f} | "
                f"{m['blurred_bce']:.3f} / {m['sobel_blurred_bce']:.3f} | "
                f"{m['disorientation_mean_deg']:.2f} | {m['bilinear_disorientation_mean_deg']:.2f} | "
                f"{m['nearest_disorientation_mean_deg']:.2f} | {m['s_per_sample']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
