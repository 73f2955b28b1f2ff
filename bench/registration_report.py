"""What EBSD-to-PL misregistration does to reconstructions, with and without registration.

Run::

    .venv/bin/python bench/registration_report.py               # K = 4: 6 reconstructions
    .venv/bin/python bench/registration_report.py --samples 2   # quicker look

(K = 4 took 15 min wall, 8 min of CPU, on a 2-core machine shared with other jobs.)

The shipped real Ti map (a 96 x 96 window) is the sample. The PL camera sees it through a known
smooth warp plus a shift of (2, -1.5) px (the test warp of tests/ingest/test_registration.py):
``PL[y, x] = sample[y + dy, x + dx]``; the EBSD map is the sample as read. The model always sees
that warped PL (the misregistered observation) with EBSD at 1 or 1/4 (grid) that is

- ``none``: the EBSD as measured (misregistered by the warp),
- ``registered``: warped onto the PL frame by :func:`ebsdray.ingest.registration.warp_ebsd` with
  the transform fitted by :func:`~ebsdray.ingest.registration.register_ebsd_to_pl`,
- ``oracle``: warped with the true field (the best any registration can do by resampling).

Truth is the sample in the PL frame (nearest-neighbour pull through the true field). Writes
``docs/registration/report.md``, ``report.json`` and figures beside them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

import ebsdray
from ebsdray.data.corruptions import smooth_displacement
from ebsdray.data.pl import camera_image, pl_intensities
from ebsdray.data.volume import Volume
from ebsdray.ingest.registration import (
    Registration,
    ebsd_grey,
    overlay_figure,
    register_ebsd_to_pl,
    warp_ebsd,
)
from ebsdray.metrics import chamfer, grain_boundaries
from ebsdray.observation import ObservationSpec, ObservedSection, ObservedVolume

SIZE, TOP, LEFT = 96, 2, 3  # window of the 101 x 101 map; the margin keeps the warp inside it
STAGE_ANGLE_INDEX = 0  # the PL image used as the fixed image (stage angle 0)
FAR_PX = 2.0  # a predicted boundary pixel farther than this from every true one is spurious
CASES = ("none", "registered", "oracle")
FRACTIONS = {"1": 1.0, "1/4": 0.25}


def known_warp(shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) (dy, dx): as tests/ingest/test_registration.py (max ~3.6 px)."""
    field = smooth_displacement(shape, 3.0, rng=3, smoothness=shape[0] / 4)
    return np.moveaxis(field, 0, -1) + np.array([2.0, -1.5])


def pull(full: Volume, warp: np.ndarray, order: int, stack: np.ndarray | None = None):
    """Sample the full map at ``(TOP + y + dy, LEFT + x + dx)``: the PL frame's view of it.

    With ``stack`` (H_full, W_full, R) PL intensities: linear interpolation, (SIZE, SIZE, R).
    Without: the truth as a Volume, by nearest neighbour.
    """
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    rows, cols = TOP + yy + warp[..., 0], LEFT + xx + warp[..., 1]
    if stack is not None:
        planes = [ndimage.map_coordinates(stack[..., k], [rows, cols], order=order, mode="nearest")
                  for k in range(stack.shape[-1])]  # fmt: skip
        return np.stack(planes, axis=-1)
    r = np.clip(np.floor(rows + 0.5).astype(int), 0, full.shape[1] - 1)
    c = np.clip(np.floor(cols + 0.5).astype(int), 0, full.shape[2] - 1)
    return Volume(full.grain_ids[:, r, c], full.quaternions[:, r, c], full.valid[:, r, c],
                  dict(full.attrs))  # fmt: skip


def field_registration(warp: np.ndarray) -> Registration:
    """A Registration holding a known displacement field (the oracle)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(warp[..., ::-1]), isVector=True)
    transform = sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))
    return Registration(transform, float("nan"), float("nan"), warp.shape[:2])


class MeasuredPL(ObservedVolume):
    """An observation whose PL is given (measured), not simulated from the truth.

    Work-around: :class:`ebsdray.observation.ObservedVolume` computes the PL from the ground truth's
    orientations, so it cannot hold a PL stack in another frame than its EBSD. Noise, masks and
    seeds follow ``ObservedVolume.section`` exactly.
    """

    def __init__(self, ebsd: Volume, pl_stack: np.ndarray, truth: Volume, spec: ObservationSpec):
        super().__init__(truth, spec)
        self.ebsd, self.pl_stack = ebsd, pl_stack

    def section(self, index: int, codec) -> ObservedSection:
        q = self.ebsd.quaternions[0].astype(np.float64)
        valid = self.ebsd.valid[0]
        pl = codec.encode_pl(self.pl_stack)
        x = torch.from_numpy(np.moveaxis(np.concatenate([codec.encode_ebsd(q), pl], -1), -1, 0))
        truth = self.truth.section(index)
        q_true = truth.quaternions[0].astype(np.float64)
        clean = np.moveaxis(np.concatenate([codec.encode_ebsd(q_true), pl], -1), -1, 0)
        x[:3, ~torch.from_numpy(valid)] = float("nan")
        _, noise_seed = np.random.SeedSequence([int(self.spec.seed), int(index)]).spawn(2)
        gen = torch.Generator().manual_seed(int(noise_seed.generate_state(1, np.uint64)[0]))
        obs = self.spec.operator(codec.pl_channels).observe(
            x, gen, valid_ebsd=torch.from_numpy(valid)
        )
        return ObservedSection(index, obs, torch.from_numpy(clean), truth)


def boundary_stats(pred: np.ndarray, true_b: np.ndarray, ghost_b: np.ndarray) -> dict:
    """Fraction of predicted boundary pixels far (> FAR_PX) from the truth, and of those the
    share that lies on the misregistered EBSD's boundaries (<= 1 px): duplicated boundaries."""
    d_true = ndimage.distance_transform_edt(~true_b)
    d_ghost = ndimage.distance_transform_edt(~ghost_b)
    far = pred & (d_true > FAR_PX)
    n = max(int(pred.sum()), 1)
    return {
        "far_fraction": float(far.sum() / n),
        "ghost_fraction": float((far & (d_ghost <= 1.0)).sum() / n),
    }


def registration_section(full: Volume, ebsd: Volume, warp: np.ndarray, seed: int) -> dict:
    """Simulate the measured PL, fit the registration, measure it against the known warp."""
    angles = np.arange(36) * 10.0
    stack = pull(full, warp, 1, pl_intensities(full.quaternions[0].astype(np.float64), angles))
    fixed = camera_image(stack[..., [STAGE_ANGLE_INDEX]], vignetting=0.2, blur_sigma=0.7,
                         read_noise=20.0, shot_noise=True, rng=seed)[..., 0]  # fmt: skip
    magnitude = np.hypot(warp[..., 0], warp[..., 1])
    out = {"stack": stack, "fixed": fixed, "greys": {}}
    for kind in ("pl", "ipf_x"):
        grey = ebsd_grey(ebsd.quaternions[0], angles[STAGE_ANGLE_INDEX], kind=kind)
        t0 = time.perf_counter()
        reg = register_ebsd_to_pl(fixed, grey, ebsd.valid[0], seed=seed)
        seconds = time.perf_counter() - t0
        res = np.hypot(*np.moveaxis(reg.displacement() - warp, -1, 0))
        out["greys"][kind] = {
            "residual_mean_px": float(res.mean()),
            "residual_mean_large_px": float(res[magnitude >= 3].mean()),
            "residual_max_px": float(res.max()),
            "seconds": seconds,
            "mi_before": reg.metric_before,
            "mi_after": reg.metric_after,
        }
        if kind == "pl":
            out["registration"], out["residual"] = reg, res
    out["warp_max_px"] = float(magnitude.max())
    out["warp_large_fraction"] = float((magnitude >= 3).mean())
    return out


def run_case(model, ebsd, stack, truth, fraction, budget, seed) -> tuple[dict, np.ndarray]:
    spec = ObservationSpec(ebsd_fraction=fraction, pattern="grid", pl_noise=0.05, seed=seed)
    obs = MeasuredPL(ebsd, stack, truth, spec)
    t0 = time.perf_counter()
    result = ebsdray.reconstruct(obs, model, budget, seed=seed, progress=False, precision="fp32")
    seconds = time.perf_counter() - t0
    metrics = dict(result.records[0]["metrics"])
    return metrics | {"seconds": seconds}, result.sections[0].boundary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=4, help="K posterior samples per case")
    p.add_argument("--out", default="docs/registration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    full = ebsdray.read_ebsd_map(ebsdray.example_ebsd_map_path())
    ebsd = full.crop(SIZE, SIZE, TOP, LEFT)
    warp = known_warp((SIZE, SIZE))
    truth = pull(full, warp, 0)
    reg = registration_section(full, ebsd, warp, a.seed)
    frames = {
        "none": ebsd,
        "registered": warp_ebsd(ebsd, reg["registration"]),
        "oracle": warp_ebsd(ebsd, field_registration(warp)),
    }
    reg["registration"].save(out / "ebsd_to_pl.tfm")
    overlay_figure(reg["fixed"], ebsd, frames["registered"], out / "overlay.png")
    model = ebsdray.load_model("multimodal")
    budget = ebsdray.Budget(samples=a.samples)
    true_b, ghost_b = grain_boundaries(truth.grain_ids[0]), grain_boundaries(ebsd.grain_ids[0])
    rows, boundaries = [], {}
    for fname, fraction in FRACTIONS.items():
        for case in CASES:
            m, pred = run_case(model, frames[case], reg["stack"], truth, fraction, budget, a.seed)
            row = {"ebsd": fname, "case": case} | m | boundary_stats(pred, true_b, ghost_b)
            rows.append(row)
            boundaries[(fname, case)] = pred
            print(fname, case, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)},
                  flush=True)  # fmt: skip
    inputs = {case: boundary_stats(grain_boundaries(v.grain_ids[0]), true_b, ghost_b)
              | {"chamfer": chamfer(grain_boundaries(v.grain_ids[0]), true_b)["bidirectional"]} for case, v in frames.items()}  # fmt: skip
    figures(reg, boundaries, true_b, ghost_b, out)
    greys = reg["greys"]
    report = {
        "samples": a.samples,
        "threads": a.threads,
        "cpu": platform.processor() or platform.machine(),
        "warp_max_px": reg["warp_max_px"],
        "warp_large_fraction": reg["warp_large_fraction"],
        "registration": greys,
        "registration_settings": reg["registration"].settings,
        "inputs": inputs,
        "rows": rows,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))


def figures(reg: dict, boundaries: dict, true_b, ghost_b, out: Path) -> None:
    """The registration residual, and predicted boundaries against truth for every case."""
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.8))
    fitted_mag = np.hypot(*np.moveaxis(reg["registration"].displacement(), -1, 0))
    for a_, img, title in ((ax[0], reg["fixed"], "fixed PL image (stage 0)"),
                           (ax[1], fitted_mag, "fitted displacement (px)"),
                           (ax[2], reg["residual"], "residual vs true warp (px)")):  # fmt: skip
        im = a_.imshow(img, cmap="gray" if a_ is ax[0] else "magma")
        if a_ is not ax[0]:
            fig.colorbar(im, ax=a_, fraction=0.046)
        a_.set_title(title)
        a_.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "residual.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(len(FRACTIONS), len(CASES), figsize=(11, 7.6))
    for i, fname in enumerate(FRACTIONS):
        for j, case in enumerate(CASES):
            pred = boundaries[(fname, case)]
            img = np.zeros((*pred.shape, 3))
            img[..., 1] = true_b
            img[..., 0] = pred
            img[..., 2] = ghost_b & ~pred & ~true_b
            ax[i, j].imshow(img * np.array([1.0, 1.0, 0.5]), interpolation="nearest")
            ax[i, j].set_title(f"EBSD {fname}, registration: {case}", fontsize=9)
            ax[i, j].set_axis_off()
    fig.suptitle("predicted (red), true in the PL frame (green), both (yellow); "
                 "misregistered EBSD boundaries (dim blue)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "reconstructions.png", dpi=90)
    plt.close(fig)


def markdown(r: dict) -> str:
    g = r["registration"]
    lines = [
        "# EBSD-to-PL registration and what misregistration does to reconstructions",
        "",
        "Produced by `bench/registration_report.py` (multimodal model, guided sampler, "
        f"K = {r['samples']}, fp32, {r['threads']} threads; {r['seconds'] / 60:.1f} min in all).",
        "",
        "The real Ti map (96 x 96 window) seen by the PL camera through a known smooth warp plus "
        f"a (2, -1.5) px shift: max {r['warp_max_px']:.2f} px, "
        f"{r['warp_large_fraction']:.0%} of pixels moved by 3 px or more. Fixed image: the PL "
        "image at stage angle 0 with camera blur (0.7 px), vignetting, shot and read noise.",
        "",
        "## Registration (affine then B-spline mesh 4, Mattes MI, 32 bins, all pixels)",
        "",
        "| moving grey | residual, warp >= 3 px | residual, all | max | MI before -> after | s |",
        "|---|---|---|---|---|---|",
    ]
    for kind, v in g.items():
        lines.append(
            f"| `{kind}` | {v['residual_mean_large_px']:.3f} px | {v['residual_mean_px']:.3f} px"
            f" | {v['residual_max_px']:.2f} px | {v['mi_before']:.3f} -> {v['mi_after']:.3f} | "
            f"{v['seconds']:.2f} |"
        )
    lines += [
        "",
        "`pl` = the PL forward model at the fixed image's stage angle (the default of "
        "`ebsd_grey`); `ipf_x` = the [0001] component of IPF-X, |c . x|. "
        "Figures: `overlay.png` (EBSD boundaries over the PL image before / after), "
        "`residual.png`.",
        "",
        "## Reconstructions (truth: the sample in the PL frame)",
        "",
        f"Far = share of predicted boundary pixels more than {FAR_PX:g} px from every true "
        "boundary; on EBSD = the share that lies instead within 1 px of the misregistered "
        "EBSD's boundaries (duplicated boundaries). Chamfer in px^2 (bidirectional).",
        "",
        "| EBSD | registration | Chamfer | forward | backward | far | on EBSD | "
        "disorientation (deg) | Sobel on PL Chamfer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['ebsd']} | {x['case']} | {x['chamfer']:.3f} | {x['chamfer_forward']:.3f} | "
            f"{x['chamfer_backward']:.3f} | {x['far_fraction']:.1%} | {x['ghost_fraction']:.1%} | "
            f"{x['disorientation_mean_deg']:.2f} | {x['sobel_chamfer']:.3f} |"
        )
    lines += ["", "The EBSD as given to the model, before any model (its own boundaries):", "",
              "| registration | Chamfer | far | on EBSD |", "|---|---|---|---|"]  # fmt: skip
    for case, v in r["inputs"].items():
        lines.append(f"| {case} | {v['chamfer']:.3f} | {v['far_fraction']:.1%} | "
                     f"{v['ghost_fraction']:.1%} |")  # fmt: skip
    lines += ["", "Figure: `reconstructions.png`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
