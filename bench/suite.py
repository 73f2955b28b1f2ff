"""The benchmark suite: every speed figure of the project, with its target, in one run.

Run::

    .venv/bin/python bench/suite.py                    # everything, full size (make bench)
    .venv/bin/python bench/suite.py --quick            # smoke run at tiny sizes (make bench-quick)
    .venv/bin/python bench/suite.py --only chamfer --only sampler --threads 1
    .venv/bin/python bench/suite.py --out /tmp/run.json

Parts (``--only NAME``, repeatable; in this order):

- ``model``: denoiser evaluations/s against batch size for fp32, bf16, channels_last and
  ``torch.compile``; FLOPs per evaluation and the share of the measured matmul peak.
- ``sampler``: share of FPS-SMC wall time spent inside the network (32 x 32 and tiled 64 x 64).
- ``aggregation``: merging K samples + metrics as a share of sampling the same section.
- ``chamfer``: the exact raster Chamfer against brute force (speed-up, equal results).
- ``ray``: the main job (``ebsdray.reconstruct``) on Ray against the same work in one process,
  1 and 2 replicas, identical outputs.
- ``train``: Ray Train steps/s against the plain loop (``bench/bench_train.py``).

Writes ``bench/results/<host>-<date>[-quick].json`` (figures, targets, details, machine facts)
and the Markdown table beside it (``.md``), and prints the table. Every target is a ratio of two
measurements taken side by side in this run, so it means the same on any machine; quick sizes
are too small for some targets (a 5 s job is all start-up) and are a smoke test only. Speed and
quality are quoted in fp32; bf16 figures sit beside them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts

import bench_model

import ebsdray
from ebsdray.metrics import chamfer, grain_boundaries
from ebsdray.posterior import Budget, SamplerSpec, merge_section, sample_section, section_metrics
from ebsdray.precision import cpu_has_native_bf16

PARTS = ("model", "sampler", "aggregation", "chamfer", "ray", "train")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each part runs (``FULL`` for the README's figures, ``QUICK`` for a smoke run)."""

    seconds: float  # timing length per throughput measurement
    batches: tuple[int, ...]  # model: batch sizes
    compile: bool  # model: try torch.compile (minutes of compilation on 2 cores)
    matmul_n: int  # model: side of the square matmul for the peak
    sampler_budget: Budget  # sampler: per section
    aggregation: tuple[int, Budget]  # section side, budget
    chamfer_sizes: tuple[int, ...]
    brute_force_pairs: float  # chamfer: largest n_pred x n_true run in full (else extrapolated)
    ray_volume: tuple[int, int, int]
    ray_budget: Budget
    train_steps: int
    train_batch: int
    # model and sampler: the precisions timed. bf16 only where the CPU computes it natively: an
    # emulated bf16 runs the network about 26x slower (AVX2), and its figures say nothing a user
    # would run (``precision="auto"`` picks fp32 there). ``main`` sets it; ``--bf16`` forces it.
    precisions: tuple[str, ...] = ("fp32", "bf16")


FULL = Sizes(
    seconds=3.0,
    batches=(1, 4, 16, 64, 256),
    compile=True,
    matmul_n=2048,
    sampler_budget=Budget(samples=2, sampler=SamplerSpec("fps_smc", steps=50, particles=4)),
    aggregation=(64, Budget(samples=8)),  # the default budget
    chamfer_sizes=(64, 256, 1024),
    brute_force_pairs=1e9,
    ray_volume=(4, 48, 48),
    ray_budget=Budget(samples=16),  # the default sampler, ~1 min in one process
    train_steps=150,
    train_batch=32,
)
QUICK = Sizes(
    seconds=0.3,
    batches=(4, 16),
    compile=False,
    matmul_n=1024,
    sampler_budget=Budget(samples=1, sampler=SamplerSpec("fps_smc", steps=8, particles=4)),
    aggregation=(32, Budget(samples=4, sampler=SamplerSpec(steps=8))),
    chamfer_sizes=(64, 256),
    brute_force_pairs=1e9,
    ray_volume=(2, 32, 32),
    ray_budget=Budget(samples=2, sampler=SamplerSpec(steps=4)),
    train_steps=12,
    train_batch=8,
)


class Report:
    """Figures with optional targets (``">= 0.9"``, ``"<= 1.10"``, ``"equal"``) and details."""

    def __init__(self) -> None:
        self.figures: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {}
        self.tables: list[str] = []  # extra Markdown tables (e.g. evaluations/s by batch)

    def add(self, part: str, name: str, value: Any, target: str = "", note: str = "") -> None:
        met = None
        if target == "equal":
            met = bool(value)
        elif target:
            op, bound = target.split()
            met = value >= float(bound) if op == ">=" else value <= float(bound)
        self.figures.append(
            {"part": part, "name": name, "value": value, "target": target, "met": met, "note": note}
        )

    def table(self) -> str:
        lines = ["| part | figure | value | target | |", "|---|---|---|---|---|"]
        for f in self.figures:
            v = f["value"]
            shown = ("yes" if v else "NO") if isinstance(v, bool) else f"{v:,.3g}"
            met = {None: "", True: "met", False: "missed"}[f["met"]]
            note = f" ({f['note']})" if f["note"] else ""
            lines.append(f"| {f['part']} | {f['name']}{note} | {shown} | {f['target']} | {met} |")
        return "\n".join(lines)


def machine_facts(threads: int) -> dict[str, Any]:
    """CPU model, native bf16, versions, threads and load: what the figures depend on."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = platform.processor() or platform.machine()
    import ray

    return {
        "host": socket.gethostname(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "ebsdray": getattr(ebsdray, "__version__", "?"),
        "python": platform.python_version(),
        "threads": threads,
        "load_average": os.getloadavg(),
    }


# -- model -------------------------------------------------------------------------------------


def part_model(rep: Report, sz: Sizes, threads: int) -> None:
    """Evaluations/s against batch for each variant, FLOPs per evaluation, share of peak."""
    model = ebsdray.load_model("multimodal")
    net, window = model.net.eval(), model.window
    flops = bench_model.flops_per_eval(net, window)
    peak = {
        p: bench_model.matmul_peak(dt, sz.seconds, sz.matmul_n)
        for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        if p in sz.precisions
    }
    channels_last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    rates: dict[str, dict[int, float]] = {}
    for prec in sz.precisions:
        rates[prec] = {
            b: bench_model.evals_per_s(net, b, window, prec, sz.seconds) for b in sz.batches
        }
        rates[f"{prec} channels_last"] = {
            b: bench_model.evals_per_s(channels_last, b, window, prec, sz.seconds, True)
            for b in sz.batches
        }
    big = max(sz.batches)
    compiled: dict[str, Any] = {}
    if sz.compile:
        for prec in sz.precisions:
            try:
                t0 = time.perf_counter()
                rate = bench_model.evals_per_s(torch.compile(net), big, window, prec, sz.seconds)
                rates[f"{prec} compile"] = {big: rate}
                compiled[prec] = {"seconds_incl_compile": time.perf_counter() - t0}
            except Exception as e:  # inductor needs a C++ compiler; report, don't fail
                compiled[prec] = {"error": f"{type(e).__name__}: {e}"[:300]}
    share = {k: {b: r * flops / peak[k.split()[0]] for b, r in v.items()} for k, v in rates.items()}
    rep.details["model"] = {
        "window": window,
        "channels": model.channels,
        "parameters": sum(p.numel() for p in net.parameters()),
        "flops_per_evaluation": flops,
        "matmul_peak_flops": peak,
        "evaluations_per_s": rates,
        "share_of_peak": share,
        "compile": compiled,
    }
    rows = [f"| evaluations/s ({threads} threads) | " + " | ".join(map(str, sz.batches)) + " |"]
    rows.append("|---" * (len(sz.batches) + 1) + "|")
    for key, by_batch in rates.items():
        cells = [f"{by_batch[b]:.0f}" if b in by_batch else "-" for b in sz.batches]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    for key in sz.precisions:
        cells = [f"{share[key][b]:.0%}" for b in sz.batches]
        rows.append(f"| {key}: share of {key} matmul peak | " + " | ".join(cells) + " |")
    rep.tables.append("\n".join(rows))
    rep.add("model", "parameters (M)", rep.details["model"]["parameters"] / 1e6)
    rep.add("model", f"MFLOP per evaluation ({window} x {window})", flops / 1e6)
    for prec in sz.precisions:
        rep.add("model", f"{prec} matmul peak (GFLOP/s, {threads} threads)", peak[prec] / 1e9)
    for key, by_batch in rates.items():
        b = max(by_batch, key=by_batch.get)
        rep.add("model", f"{key} evaluations/s (best: batch {b})", by_batch[b])
        if key in sz.precisions:
            rep.add("model", f"{key} share of {key} matmul peak (batch {b})", share[key][b])
    for key, err in compiled.items():
        if "error" in err:
            rep.add("model", f"{key} torch.compile works", False, note=err["error"][:60])


# -- sampler: network share --------------------------------------------------------------------


class TimedNet(nn.Module):
    """Wraps a denoiser and adds up the wall time, calls and windows of its forward passes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.config = net, net.config
        self.seconds, self.calls, self.windows = 0.0, 0, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.net(x, t)
        self.seconds += time.perf_counter() - t0  # CPU: kernels are done when forward returns
        self.calls += 1
        self.windows += x.shape[0]
        return out


def observed_section(model, size: int, seed: int = 7):
    """Section 0 of a synthetic (1, size, size) volume, EBSD on a 1/16 grid, PL noise 0.05."""
    vol = ebsdray.synthetic_volume((1, size, size), seed=seed, grain_size=10)
    obs = ebsdray.observe(vol, ebsd_fraction=1 / 16, pattern="grid", pl_noise=0.05, seed=0)
    return obs.section(0, model.codec)


def network_share(model, section, budget: Budget, precision: str) -> dict[str, float]:
    """Run ``sample_section`` with a timed network; share = network seconds / sampler seconds."""
    timed = TimedNet(model.net)
    timed_model = dataclasses.replace(model, net=timed)
    t0 = time.perf_counter()
    _, info = sample_section(
        timed_model, section, budget.sampler, 0, range(budget.samples), precision=precision
    )
    total = time.perf_counter() - t0
    return {
        "sampler_seconds": total,
        "network_seconds": timed.seconds,
        "share": timed.seconds / total,
        "network_calls": timed.calls,
        "windows": timed.windows,
        "network_evaluations": info["network_evaluations"],
        "steps": info["num_steps"],
    }


def part_sampler(rep: Report, sz: Sizes, threads: int) -> None:
    model = ebsdray.load_model("multimodal")
    b, out = sz.sampler_budget, {}
    warm_up = Budget(samples=1, sampler=dataclasses.replace(b.sampler, steps=1))  # each shape
    for size in (32, 64):
        section = observed_section(model, size)
        for prec in sz.precisions:
            network_share(model, section, warm_up, prec)
            r = out[f"{size} {prec}"] = network_share(model, section, b, prec)
            per_call = r["windows"] // r["network_calls"]
            note = f"K={b.samples} N={b.sampler.steps} M={b.sampler.particles}, {per_call} windows/call"
            name = f"network share of FPS-SMC, {size}^2, {prec}"
            rep.add("sampler", name, r["share"], ">= 0.90", note)
    rep.details["sampler"] = out


# -- aggregation + metrics share ---------------------------------------------------------------


def part_aggregation(rep: Report, sz: Sizes, threads: int) -> None:
    model = ebsdray.load_model("multimodal")
    size, budget = sz.aggregation
    section = observed_section(model, size)
    t0 = time.perf_counter()
    samples, info = sample_section(
        model, section, budget.sampler, 0, range(budget.samples), precision="fp32"
    )
    sampling = time.perf_counter() - t0
    # warm-up: the first merge in a process imports torch._dynamo (its optimizer, ~1 s once)
    t0 = time.perf_counter()
    section_metrics(
        merge_section(section, samples, model.codec, model.variant), section, model.codec
    )
    first_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = merge_section(section, samples, model.codec, model.variant, info=info)
    merge = time.perf_counter() - t0
    t0 = time.perf_counter()
    section_metrics(result, section, model.codec)
    metrics = time.perf_counter() - t0
    share = (merge + metrics) / sampling
    rep.details["aggregation"] = {
        "section": size,
        "budget": budget.to_dict(),
        "sampling_seconds": sampling,
        "merge_seconds": merge,
        "metrics_seconds": metrics,
        "first_call_seconds": first_call,
        "share": share,
    }
    spec = budget.sampler
    note = f"{size}^2, K={budget.samples} N={spec.steps} M={spec.particles}, fp32"
    rep.add("aggregation", "aggregation + metrics / sampling", share, "<= 0.05", note)


# -- chamfer -----------------------------------------------------------------------------------


def boundary_masks(size: int, grain: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries of a 2-D Voronoi tessellation (truth) and of a jittered copy (prediction)."""
    rng = np.random.default_rng(seed)
    n = max(int(size * size / grain**2), 2)
    seeds = rng.uniform(0, size, (n, 2))
    pixels = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1)
    pixels = pixels.reshape(-1, 2)

    def labels(s: np.ndarray) -> np.ndarray:
        return cKDTree(s).query(pixels)[1].reshape(size, size) + 1

    true = grain_boundaries(labels(seeds))
    pred = grain_boundaries(labels(seeds + rng.normal(0, 1.5, seeds.shape)))
    return pred, true


def nearest_sq(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Exact squared distance (int64) from each of (n, 2) integer ``points`` to the nearest of
    ``targets``, by brute force over all pairs (in chunks of about 4 M pairs)."""
    out = np.empty(len(points), np.int64)
    chunk = max(1, 4_000_000 // max(len(targets), 1))
    ty, tx = targets[:, 0].astype(np.int64), targets[:, 1].astype(np.int64)
    for i in range(0, len(points), chunk):
        p = points[i : i + chunk].astype(np.int64)
        out[i : i + chunk] = ((p[:, :1] - ty) ** 2 + (p[:, 1:] - tx) ** 2).min(axis=1)
    return out


def brute_force_chamfer(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Chamfer (pytorch3d semantics, as :func:`ebsdray.metrics.chamfer`) over all pairs."""
    h, w = pred.shape
    empty = float(h * h + w * w)
    p, t = np.argwhere(pred), np.argwhere(true)

    def direction(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) == 0:
            return 0.0
        return float(nearest_sq(a, b).mean()) if len(b) else empty

    fwd, bwd = direction(p, t), direction(t, p)
    return {"forward": fwd, "backward": bwd, "bidirectional": fwd + bwd}


def part_chamfer(rep: Report, sz: Sizes, threads: int) -> None:
    out = {}
    for size in sz.chamfer_sizes:
        pred, true = boundary_masks(size)
        fast = bench_model.median_seconds(lambda: chamfer(pred, true), sz.seconds)  # noqa: B023
        got = chamfer(pred, true)
        n_p, n_t = int(pred.sum()), int(true.sum())
        r: dict[str, Any] = {"pred_points": n_p, "true_points": n_t, "exact_seconds": fast}
        if n_p * n_t <= sz.brute_force_pairs:
            t0 = time.perf_counter()
            ref = brute_force_chamfer(pred, true)
            r["brute_force_seconds"] = time.perf_counter() - t0
            r["equal"] = all(np.isclose(got[k], ref[k], rtol=1e-12, atol=0) for k in ref)
            note = ""
        else:  # a random subset of the points of both sets: check them, extrapolate the time
            rng = np.random.default_rng(0)
            p, t = np.argwhere(pred), np.argwhere(true)
            sub_p = p[rng.choice(n_p, 1024, replace=False)]
            sub_t = t[rng.choice(n_t, 1024, replace=False)]
            t0 = time.perf_counter()
            d_p, d_t = nearest_sq(sub_p, t), nearest_sq(sub_t, p)
            seconds = time.perf_counter() - t0
            r["brute_force_seconds"] = seconds * (n_p * n_t * 2) / (1024 * (n_t + n_p))
            r["brute_force_extrapolated_from"] = "1024 points of each set"
            from scipy import ndimage

            edt_t = ndimage.distance_transform_edt(~true) ** 2
            edt_p = ndimage.distance_transform_edt(~pred) ** 2
            r["equal"] = bool(
                np.allclose(edt_t[tuple(sub_p.T)], d_p, rtol=1e-12, atol=0)
                and np.allclose(edt_p[tuple(sub_t.T)], d_t, rtol=1e-12, atol=0)
            )
            note = "brute force extrapolated from 1024 points per set"
        r["speedup"] = r["brute_force_seconds"] / fast
        out[size] = r
        target = ">= 100" if size == 256 else ""
        rep.add("chamfer", f"speed-up over brute force, {size}^2", r["speedup"], target, note)
        rep.add("chamfer", f"equal to brute force, {size}^2", r["equal"], "equal")
    rep.details["chamfer"] = out


# -- ray ---------------------------------------------------------------------------------------


def start_ray() -> float:
    """A local Ray cluster with this machine's CPUs, workers at normal priority; seconds."""
    import ray

    os.environ.setdefault("RAY_worker_niceness", "0")  # default 15 starves replicas on a busy box
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - t0


def identical(a, b) -> bool:
    """Whether two reconstructions have bitwise-identical outputs in every section."""
    for sa, sb in zip(a.sections, b.sections, strict=True):
        for name in ("boundary", "boundary_confidence", "ebsd_quaternions", "pl_denoised"):
            if not np.array_equal(getattr(sa, name), getattr(sb, name)):
                return False
        if sa.uncertainty.keys() != sb.uncertainty.keys() or not all(
            np.array_equal(v, sb.uncertainty[k]) for k, v in sa.uncertainty.items()
        ):
            return False
    return True


def part_ray(rep: Report, sz: Sizes, threads: int) -> None:
    """``reconstruct`` in this process (1 thread, as a replica) and on Ray with 1 and 2
    replicas of 1 thread each; same volume, budget and seed."""
    import ray

    model = ebsdray.load_model("multimodal")
    vol = ebsdray.synthetic_volume(sz.ray_volume, seed=11, grain_size=10)
    obs = ebsdray.observe(vol, ebsd_fraction=1 / 16, pattern="grid", pl_noise=0.05, seed=0)
    common = dict(seed=0, precision="fp32", progress=False, figures=False)
    resources = ebsdray.ReplicaResources(threads=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(resources.threads)
    try:
        t0 = time.perf_counter()
        local = ebsdray.reconstruct(obs, model, sz.ray_budget, **common)
        seconds = {"in_process": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(previous)
    ray_start = start_ray()
    same = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        res = ebsdray.reconstruct(
            obs,
            model,
            sz.ray_budget,
            **common,
            placement=ebsdray.Placement(cluster="local", replicas=n, resources=resources),
        )
        seconds[f"ray_{n}"] = time.perf_counter() - t0
        same[n] = identical(local, res)
    ray.shutdown()
    infos = [r["info"] for r in local.records]
    job_share = sum(i["aggregation_seconds"] for i in infos) / sum(
        i["sampling_seconds"] for i in infos
    )
    ratio = seconds["ray_1"] / seconds["in_process"]
    speedup = seconds["ray_1"] / seconds["ray_2"]
    rep.details["ray"] = {
        "volume": sz.ray_volume,
        "budget": sz.ray_budget.to_dict(),
        "seconds": seconds,
        "ray_start_seconds": ray_start,
        "identical": same,
        "in_process_aggregation_share": job_share,
        "worker_niceness": os.environ.get("RAY_worker_niceness"),
    }
    job = f"{seconds['in_process']:.0f} s job" + (
        " < 1 min: start-up dominates" if seconds["in_process"] < 60 else ""
    )
    rep.add("ray", "Ray (1 replica) / one process, wall time", ratio, "<= 1.10", job)
    rep.add("ray", "speed-up of 2 replicas over 1", speedup, note=f"{os.cpu_count()} CPUs")
    rep.add("ray", "outputs identical (1 and 2 replicas)", all(same.values()), "equal")
    rep.add("ray", "aggregation + metrics / sampling in that job", job_share, "<= 0.05")


# -- train -------------------------------------------------------------------------------------


def part_train(rep: Report, sz: Sizes, threads: int) -> None:
    import bench_train  # imports Ray Train (slow): only here
    import ray

    start_ray()
    with tempfile.TemporaryDirectory() as tmp:
        data = bench_train.small_dataset(Path(tmp) / "data")
        r = bench_train.compare(data, sz.train_steps, "fp32", sz.train_batch, threads)
    ray.shutdown()
    rep.details["train"] = {**r, "steps": sz.train_steps, "batch": sz.train_batch}
    note = f"batch {sz.train_batch}, {sz.train_steps} steps, fp32"
    rep.add("train", "Ray Train (1 worker) / plain loop, steps/s", r["ratio"], ">= 0.9", note)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--only", action="append", choices=PARTS, help="run only this part")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="try torch.compile")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="time bf16 beside fp32 (default: only where the CPU runs bf16 natively)",
    )
    p.add_argument("--out", help="JSON path (default bench/results/<host>-<date>.json)")
    a = p.parse_args()
    sz = QUICK if a.quick else FULL
    if a.compile is not None:
        sz = dataclasses.replace(sz, compile=a.compile)
    bf16 = cpu_has_native_bf16() if a.bf16 is None else a.bf16
    sz = dataclasses.replace(sz, precisions=("fp32", "bf16") if bf16 else ("fp32",))
    if not bf16:
        print("[suite] bf16 not timed: this CPU emulates it (--bf16 times it anyway)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    default = f"{socket.gethostname()}-{stamp}{'-quick' if a.quick else ''}.json"
    out = Path(a.out or Path(__file__).parent / "results" / default)

    rep = Report()
    facts = machine_facts(a.threads)
    if facts["load_average"][0] > 0.5:
        print(f"[suite] warning: load average {facts['load_average'][0]:.2f}: the cores are busy")
    seconds = {}
    for name in [q for q in PARTS if q in (a.only or PARTS)]:
        print(f"[suite] {name} ...", flush=True)
        t0 = time.perf_counter()
        globals()[f"part_{name}"](rep, sz, a.threads)
        seconds[name] = time.perf_counter() - t0
    facts["part_seconds"] = seconds
    facts["load_average_end"] = os.getloadavg()

    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": facts,
        "quick": a.quick,
        "sizes": dataclasses.asdict(sz),
        "figures": rep.figures,
    }
    out.write_text(json.dumps({**doc, "details": rep.details}, indent=1, default=str))
    table = rep.table()
    header = (
        f"{facts['cpu']}, {facts['cpu_count']} CPUs, native bf16: {facts['native_bf16']}, "
        f"torch {facts['torch']}, {a.threads} threads{', QUICK sizes' if a.quick else ''}"
    )
    table = "\n\n".join([table, *rep.tables])
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n")
    print(f"\n{header}\n\n{table}\n\nwritten: {out}")


if __name__ == "__main__":
    main()
