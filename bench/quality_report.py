"""The quality report: the default reconstruction against interpolation and Sobel, on held-out
synthetic sections (two textures, seeds never used for training or tuning) and on the shipped
real Ti map with simulated PL.

Run::

    .venv/bin/python bench/quality_report.py                       # default budget, fp32
    .venv/bin/python bench/quality_report.py --samples 4 --quick   # smaller, for a look

Writes ``docs/quality/report.md`` (the tables), ``docs/quality/report.json`` and one figure per
setting (truth, observation, reconstruction, error map) beside them. Every number is a mean over
sections; the baselines are computed from the very same observations.

Settings: EBSD on a grid at 1, 1/4, 1/16 and none, PL noise 0.05; with no EBSD also three
scratches on the PL, and PL noise 0.2. Models: multimodal with the default budget; the EBSD-only
model at 1/4 (it must beat nearest for "multimodal beats the EBSD model" to be fair); the PL-only
model with no EBSD; the paper's FPS-SMC (N = 50, M = 4) at 1/16 for time per sample.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import ebsdray
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.experiments.volumes import REAL, TEST_VOLUMES, held_out_volume
from ebsdray.figures import ebsd_rgb
from ebsdray.metrics import grain_boundaries
from ebsdray.precision import cpu_name

SETTINGS = [  # name, EBSD fraction, PL noise, corruptions
    ("EBSD 1", 1.0, 0.05, {}),
    ("EBSD 1/4", 0.25, 0.05, {}),
    ("EBSD 1/16", 0.0625, 0.05, {}),
    ("no EBSD", 0.0, 0.05, {}),
    ("no EBSD, 3 scratches", 0.0, 0.05, {"scratches": {"n": 3}}),
    ("no EBSD, PL noise 0.2", 0.0, 0.2, {}),
]
KEYS = [
    "disorientation_mean_deg", "nearest_disorientation_mean_deg",
    "bilinear_disorientation_mean_deg", "disorientation_boundary_deg", "chamfer",
    "sobel_chamfer", "blurred_bce", "sobel_blurred_bce", "pl_psnr", "observed_pl_psnr",
]  # fmt: skip


def volumes(quick: bool) -> dict[str, ebsdray.Volume]:
    """The held-out test volumes (ebsdray.experiments.volumes: seeds and textures in no training
    split and not the tuning seeds 5101-5108), two 64 x 64 sections each, and the real map."""
    depth = 1 if quick else 2
    out = {
        f"synthetic ({TEST_VOLUMES[name]['seed']})": held_out_volume(name, depth)
        for name in TEST_VOLUMES
    }
    out["real Ti map (96 x 96)"] = held_out_volume(REAL)
    return out


def reconstruct(model, volume, setting, budget, seed: int) -> tuple[dict, object, float]:
    _, fraction, noise, corruptions = setting
    obs = ebsdray.observe(
        volume,
        ebsd_fraction=fraction,
        pattern="grid" if fraction > 0 else "none",
        pl_noise=noise,
        corruptions=corruptions,
        seed=seed,
    )
    t0 = time.perf_counter()
    result = ebsdray.reconstruct(
        obs, model, budget, seed=seed, progress=False, precision="fp32",
        placement=ebsdray.Placement(
            resources=ebsdray.ReplicaResources(threads=torch.get_num_threads())
        ),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    rows = [r["metrics"] for r in result.records]
    samples = sum(r["info"]["samples"] for r in result.records)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return mean, result, seconds / samples


def figure(result, title: str, path: Path) -> None:
    """Truth, observation, reconstruction and error map of the first section, against the truth
    the metrics score (a real map's: grain-dilated, its unindexed pixels left out of the error)."""
    s = result.sections[0]
    sec = result.observation.section(0, result.codec)
    truth = sec.truth
    y, m = sec.observation.y.numpy(), sec.observation.mask.numpy()
    q_true = truth.quaternions[0]
    fig, ax = plt.subplots(1, 5, figsize=(17, 3.6))
    ax[0].imshow(ebsd_rgb(sec.clean[:3].numpy()))
    ax[0].set_title("truth (EBSD channels)")
    if m[:3].any():
        obs = ebsd_rgb(y[:3]) * m[0][..., None]
        ax[1].imshow(obs)
        ax[1].set_title(f"observed EBSD ({m[0].mean():.3g} of pixels)")
    else:
        ax[1].imshow(y[3], cmap="gray")
        ax[1].set_title("observed PL (channel 1)")
    if s.ebsd_quaternions is not None:
        ax[2].imshow(
            ebsd_rgb(result.codec.encode_section(s.ebsd_quaternions.astype(np.float64))[:3])
        )
        ax[2].set_title("reconstructed EBSD")
        err = disorientation_deg(s.ebsd_quaternions.astype(np.float64), q_true.astype(np.float64))
        err = np.where(truth.valid[0], err, np.nan)  # unindexed: no truth to score against
        unscored = plt.get_cmap("magma").copy()
        unscored.set_bad("0.6")  # grey
        im = ax[3].imshow(err, cmap=unscored, vmin=0, vmax=30)
        fig.colorbar(im, ax=ax[3], fraction=0.046, label="disorientation (deg)")
        ax[3].set_title(f"error (mean {np.nanmean(err):.2f} deg)")
    true_b = grain_boundaries(truth.grain_ids[0])
    if s.boundary is not None:
        over = np.zeros((*true_b.shape, 3))
        over[..., 1] = true_b
        over[..., 0] = s.boundary
        ax[4].imshow(over)
        ax[4].set_title("boundaries: found (red),\ntrue (green), both (yellow)")
    for a in ax:
        a.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=8, help="K (default: the default budget's)")
    p.add_argument("--quick", action="store_true", help="one section per synthetic volume")
    p.add_argument("--out", default="docs/quality")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--data", default="", help="rerun only the data whose name contains this (e.g. 'real'); "
        "their rows replace those in the existing report.json, the others are kept"
    )  # fmt: skip
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    budget = ebsdray.Budget(samples=a.samples)
    models = {v: ebsdray.load_model(v) for v in ("multimodal", "ebsd", "pl")}
    report: dict = {
        "budget": budget.to_dict(),
        "precision": "fp32",
        "cpu": cpu_name(),
        "threads": a.threads,
        "rows": [],
    }
    old = json.loads((out / "report.json").read_text()) if a.data else None
    t_start = time.perf_counter()
    for vname, vol in volumes(a.quick).items():
        if a.data not in vname:
            continue
        for setting in SETTINGS:
            row = {"data": vname, "setting": setting[0]}
            mm, result, sps = reconstruct(models["multimodal"], vol, setting, budget, a.seed)
            row |= mm | {"s_per_sample": sps}
            slug = f"{vname.split(' (')[0].split()[0]}_{vname.split('(')[-1][:4]}_{setting[0]}"
            slug = "".join(c if c.isalnum() else "_" for c in slug).strip("_")
            figure(result, f"{vname}: {setting[0]}, K = {a.samples}", out / f"{slug}.png")
            row["figure"] = f"{slug}.png"
            if setting[1] == 0.25:
                em, _, _ = reconstruct(models["ebsd"], vol, setting, budget, a.seed)
                row["ebsd_model_disorientation_mean_deg"] = em["disorientation_mean_deg"]
            if setting[1] == 0.0:
                pm, _, _ = reconstruct(models["pl"], vol, setting, budget, a.seed)
                row["pl_model_chamfer"] = pm["chamfer"]
            if setting[1] == 0.0625:
                fps = ebsdray.SamplerSpec("fps_smc", steps=50, particles=4)
                paper = ebsdray.Budget(samples=2, sampler=fps)
                _, _, row["fps_smc_s_per_sample"] = reconstruct(
                    models["multimodal"], vol, setting, paper, a.seed
                )
            report["rows"].append(row)
            print(vname, setting[0], {k: round(v, 3) for k, v in row.items()
                                      if isinstance(v, float)}, flush=True)  # fmt: skip
    report["seconds"] = time.perf_counter() - t_start
    if old is not None:  # a partial rerun: keep the other data's rows, in their order
        fresh = {r["data"] for r in report["rows"]}
        report["rows"] = [r for r in old["rows"] if r["data"] not in fresh] + report["rows"]
        report["rerun"] = {
            "data": sorted(fresh),
            "seconds": report["seconds"],
            "threads": a.threads,
        }
        report["threads"] = old["threads"]
        report["seconds"] = old["seconds"]  # the full run's time; the rerun's is beside it
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    b, s = report["budget"], report["budget"]["sampler"]
    lines = [
        f"Budget: {s['name']}, K = {b['samples']}, N = {s['steps']}, warm start t = "
        f"{s['warm_start_t']}, guidance EBSD {s['ebsd_guidance']} / PL {s['pl_guidance']}; "
        f"fp32, {report['threads']} threads on {report['cpu']}; "
        f"{report['seconds'] / 60:.0f} min in all"
        + (
            f" (rows of {', '.join(report['rerun']['data'])} rerun with "
            f"{report['rerun']['threads']} thread(s): {report['rerun']['seconds'] / 60:.0f} min)."
            if "rerun" in report
            else "."
        ),
        "",
        "| data | setting | disorientation (deg) | nearest | bilinear | EBSD model | Chamfer | "
        "Sobel | PL model | PL PSNR (dB) | observed PL | s / sample | FPS-SMC s / sample |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['data']} | {r['setting']} | {fmt(r.get('disorientation_mean_deg'))} | "
            f"{fmt(r.get('nearest_disorientation_mean_deg'))} | "
            f"{fmt(r.get('bilinear_disorientation_mean_deg'))} | "
            f"{fmt(r.get('ebsd_model_disorientation_mean_deg'))} | {fmt(r.get('chamfer'), 3)} | "
            f"{fmt(r.get('sobel_chamfer'), 3)} | {fmt(r.get('pl_model_chamfer'), 3)} | "
            f"{fmt(r.get('pl_psnr'), 1)} | {fmt(r.get('observed_pl_psnr'), 1)} | "
            f"{fmt(r.get('s_per_sample'), 1)} | {fmt(r.get('fps_smc_s_per_sample'), 1)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
