"""Driver memory of a streamed volume reconstruction: a 64-section volume against a 4-section one.

Run::

    .venv/bin/python bench/bench_streaming.py              # 4 and 64 sections of 32 x 32, 2 replicas

Each size runs in a fresh process (Ray's local cluster, 2 replicas, outputs written to a zarr
store) and reports that driver process's peak resident memory (``ru_maxrss``). The driver holds
object references and small per-section sums only, so the two peaks should differ by little: the
issue asks for within 20%. A tiny budget (K = 2, N = 4, M = 1) keeps the 64 sections quick; the
memory pattern does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def one(sections: int, size: int) -> dict:
    import ray
    import torch

    import ebsdray

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    model = ebsdray.load_model("multimodal")
    vol = ebsdray.synthetic_volume((sections, size, size), seed=5, grain_size=10)
    obs = ebsdray.observe(vol, ebsd_fraction=0.25, pattern="grid", seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        ebsdray.reconstruct(
            obs,
            model,
            ebsdray.Budget(samples=2, sampler=ebsdray.SamplerSpec(steps=4, particles=1)),
            placement=ebsdray.Placement(replicas=2),
            output_dir=f"{out}/run",
            keep_samples=True,
            figures=False,
            progress=False,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "sections": sections,
        "volume_mb": vol.quaternions.nbytes / 2**20,
        "peak_before_mb": before,
        "peak_mb": peak,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 64])
    p.add_argument("--pixels", type=int, default=32)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one(a.child, a.pixels)))
        return
    rows = []
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--pixels", str(a.pixels)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'sections':>8} {'volume MB':>10} {'peak before MB':>15} {'peak MB':>8} {'s':>6}")
    for r in rows:
        print(
            f"{r['sections']:8d} {r['volume_mb']:10.1f} {r['peak_before_mb']:15.0f} "
            f"{r['peak_mb']:8.0f} {r['seconds']:6.1f}"
        )
    print(f"peak ratio {rows[-1]['peak_mb'] / rows[0]['peak_mb']:.3f} (largest / smallest)")


if __name__ == "__main__":
    main()
