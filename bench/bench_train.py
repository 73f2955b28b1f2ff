"""Training throughput: the plain loop against Ray Train (1 worker), same config and data.

    python bench/bench_train.py --data-dir ~/ebsdray/data --steps 300

Prints steps/s of the steady state (the first validation is excluded by timing only the span
between the loop's own log points). Needs a dataset from jobs/generate_data.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ebsdray.distributed.train import fit
from ebsdray.training import TrainConfig


def run(data_dir: str, steps: int, workers: int, bf16: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            name=f"bench-{workers}",
            variant="multimodal",
            data_dir=data_dir,
            run_dir=f"{tmp}/run",
            steps=steps,
            val_interval=steps,
            val_windows=64,
            sample_count=0,
            bf16=bf16,
        )
        t0 = time.perf_counter()
        fit(cfg, num_workers=workers, cpus_per_worker=2, storage_path=f"{tmp}/ray")
        wall = time.perf_counter() - t0
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        assert metrics["step"] == steps
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=str(Path.home() / "ebsdray" / "data"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--fp32", action="store_true")
    a = p.parse_args()
    bf16 = not a.fp32
    # Difference of two run lengths removes start-up (Ray, data loading, validation) from the rate.
    for label, workers in (("plain loop", 0), ("Ray Train, 1 worker", 1)):
        short = run(a.data_dir, a.steps // 3, workers, bf16)
        long = run(a.data_dir, a.steps, workers, bf16)
        rate = (a.steps - a.steps // 3) / (long - short)
        print(
            f"{label:22s} {rate:5.2f} steps/s  (wall {long:.1f} s for {a.steps} steps incl. start-up)"
        )


if __name__ == "__main__":
    main()
