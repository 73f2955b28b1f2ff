"""Adaptive sampling budgets against fixed K = 16 on a held-out synthetic volume.

Run::

    .venv/bin/python bench/bench_adaptive.py                       # 4 sections of 48 x 48
    .venv/bin/python bench/bench_adaptive.py --sections 8 --size 64 --tolerances 0.03 0.02 0.015

Every budget reconstructs the same observed sections with the same seed (so the adaptive runs
draw a prefix of the fixed run's samples) and reports network evaluations, samples per section
and the mean metrics.
"""

from __future__ import annotations

import argparse
import time

import torch

import ebsdray


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", type=int, default=4)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--fraction", type=float, default=1 / 16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--round", type=int, default=4)
    p.add_argument("--max-samples", type=int, default=32)
    p.add_argument("--tolerances", type=float, nargs="+", default=[0.03, 0.02])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = ebsdray.load_model("multimodal")
    vol = ebsdray.synthetic_volume((a.sections, a.size, a.size), seed=4242, grain_size=10)
    obs = ebsdray.observe(vol, ebsd_fraction=a.fraction, pattern="grid", pl_noise=0.05, seed=1)
    common = {"sampler": ebsdray.SamplerSpec(steps=a.steps, particles=a.particles)}
    budgets = {"fixed K=16": ebsdray.Budget(samples=16, **common)}
    for tol in a.tolerances:
        budgets[f"adaptive tol={tol:g}"] = ebsdray.Budget(
            samples=a.round, max_samples=a.max_samples, tolerance=tol, **common
        )
    keys = ("chamfer", "blurred_bce", "disorientation_mean_deg", "pl_psnr")
    print(
        f"{a.sections} sections {a.size}x{a.size}, EBSD fraction {a.fraction:g}, N={a.steps}, M={a.particles}"
    )
    print(
        f"{'budget':22s} {'evals':>9s} {'K per section':>22s} "
        + " ".join(f"{k:>24s}" for k in keys)
        + f" {'s':>6s}"
    )
    for name, budget in budgets.items():
        t0 = time.perf_counter()
        r = ebsdray.reconstruct(obs, model, budget, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        m = ebsdray.evaluate(r)
        evals = sum(x["info"]["network_evaluations"] for x in r.records)
        ks = ",".join(str(x["info"]["samples"]) for x in r.records)
        print(
            f"{name:22s} {evals:9d} {ks:>22s} "
            + " ".join(f"{m[k]:24.3f}" for k in keys)
            + f" {seconds:6.0f}"
        )


if __name__ == "__main__":
    main()
