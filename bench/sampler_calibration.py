"""Calibration of the posterior samplers against an exact Gaussian posterior (issue 4).

With a Gaussian prior the optimal denoiser and the posterior are closed form
(:mod:`ebsdray.inverse.gaussian`), so a sampler's errors are its own. For each setting: K
independent runs on one observation; the table reports

- ``z_rms`` / ``z_max``: posterior-mean error in Monte Carlo standard errors (RMS and max over
  entries; ~1 and ~2.5 for an unbiased sampler, bias grows it like sqrt(K));
- ``bias``: RMS posterior-mean error in posterior standard deviations (Monte Carlo noise adds
  about sqrt(1 / K): 0.025 at 1600 runs, 0.035 at 800);
- ``var_obs`` / ``var_unobs``: sample variance / posterior variance, mean over observed and
  unobserved entries (1 = calibrated; MC sd about sqrt(2 / K) per entry);
- ``prior``: the same ratio for the setting's chain with nothing observed (the kernel alone);
- ``ess``: mean ESS over steps and runs (of M), ``NFE``: network calls per sample.

Run (about 10 minutes on one core)::

    .venv/bin/python bench/sampler_calibration.py            # both problems, 1600 / 800 runs
    .venv/bin/python bench/sampler_calibration.py --runs 400 --problems gauss16
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace

import torch

from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.inverse.baseline import replacement_sampler
from ebsdray.inverse.fps_smc import Ablation, fps_smc, sample_generators
from ebsdray.inverse.gaussian import calibration, toy_problem

PAPER = dict(
    kernel="fps", c=0.95, pin_noise=False, x0_variance=False, ess_threshold=1.0, fine_tail=False
)
DDPM = dict(kernel="ddpm", free_kernel="ddpm")
SETTINGS: list[tuple[str, dict]] = [
    ("paper: fps c=0.95", dict(PAPER)),
    ("paper: fps c=0.5", dict(PAPER, c=0.5)),
    ("paper: fps c=0.2", dict(PAPER, c=0.2)),
    ("ddpm kernel, fps c=0.95 path", dict(PAPER, **DDPM, path_kernel="fps")),
    ("ddpm kernel + ddpm path", dict(PAPER, **DDPM)),
    ("  + pinned noise", dict(PAPER, **DDPM, pin_noise=True)),
    ("  + x0 variance, ess 0.5", dict(**DDPM, fine_tail=False)),
    ("  + M=32", dict(**DDPM, fine_tail=False, particles=32)),
    ("fps c=0.95 + pinned noise", dict(PAPER, pin_noise=True)),
    ("  + x0 variance", dict(PAPER, pin_noise=True, x0_variance=True)),
    ("  + ess 0.5", dict(fine_tail=False)),
    ("  + fine tail = DEFAULT", dict()),
    ("DEFAULT, M=16", dict(particles=16)),
    ("DEFAULT, M=32", dict(particles=32)),
    ("DEFAULT, N=50", dict(num_steps=50)),
    ("DEFAULT, N=250", dict(num_steps=250)),
    ("DEFAULT, free kernel fps", dict(free_kernel="fps")),
    ("baseline: replacement", dict(baseline=True)),
]
ABLATION = {f.name for f in fields(Ablation)}  # the settings' keys that are fps_smc's switches


def run(setting: dict, sched: DiffusionSchedule, prior, obs, runs: int, section: int):
    kw = dict(setting)
    gens = sample_generators(0, section, range(runs))
    if kw.pop("baseline", False):
        s, info = replacement_sampler(prior, sched, obs, gens, num_steps=100, clip=False)
        info = dict(info, ess=torch.ones(1, 1), particles=1)
    else:
        switches = {k: kw.pop(k) for k in list(kw) if k in ABLATION}
        kw = {"num_steps": 100, "clip": False, **kw}
        s, info = fps_smc(prior, sched, obs, gens, **kw, ablation=Ablation(**switches))
    return s, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=0, help="K per setting (default 1600 / 800)")
    p.add_argument("--problems", default="gauss16,multimodal")
    p.add_argument("--only", default="", help="comma-separated setting numbers (1-based)")
    args = p.parse_args()
    torch.set_num_threads(1)
    sched = DiffusionSchedule()
    chosen = [int(i) for i in args.only.split(",") if i] or range(1, len(SETTINGS) + 1)
    head = f"{'problem':10s} {'#':>2s} {'setting':30s} {'M':>3s} {'NFE':>5s} {'z_rms':>6s} {'z_max':>6s} {'bias':>5s} {'var_obs':>8s} {'var_unobs':>9s} {'prior':>6s} {'ess':>6s} {'sec':>6s}"
    print(head)
    print("-" * len(head))
    for problem in args.problems.split(","):
        runs = args.runs or (1600 if problem == "gauss16" else 800)
        prior, obs, _, mean, cov = toy_problem(problem, sched)
        empty = replace(obs, y=torch.zeros_like(obs.y), mask=torch.zeros_like(obs.mask))
        for n in chosen:
            label, setting = SETTINGS[n - 1]
            t0 = time.perf_counter()
            s, info = run(setting, sched, prior, obs, runs, section=0)
            dt = time.perf_counter() - t0
            cal = calibration(s, mean, cov, obs.mask)
            s0, _ = run(dict(setting, particles=1), sched, prior, empty, runs, section=1)
            pr = calibration(s0, prior.mu.view(prior.shape), prior.cov, empty.mask)
            nfe = info["network_evaluations"] // runs
            print(
                f"{problem:10s} {n:2d} {label:30s} {info['particles']:3d} {nfe:5d} "
                f"{cal['mean_z_rms']:6.2f} {cal['mean_z_max']:6.2f} {cal['bias_sd']:5.3f} "
                f"{cal['var_ratio_observed']:8.3f} {cal['var_ratio_unobserved']:9.3f} "
                f"{pr['var_ratio_unobserved']:6.3f} {float(info['ess'].mean()):6.2f} {dt:6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
