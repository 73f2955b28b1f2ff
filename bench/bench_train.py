"""Training throughput: the plain loop against Ray Train (1 worker), same config and data.

Run::

    .venv/bin/python bench/bench_train.py                          # a small generated dataset
    .venv/bin/python bench/bench_train.py --data-dir ~/ebsdray/data --steps 300

Prints steady-state steps/s of both and their ratio (target >= 0.9). The rate is the one the
loop itself logs (``steps_per_s``, to a throwaway MLflow store) between its log points, median
over the intervals after the first: start-up (Ray, worker processes, data loading), the first
steps and the final validation fall outside. Without ``--data-dir`` a small dataset is
generated in a temporary directory (a few seconds); ``bench/suite.py`` runs this as its
``train`` part.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import mlflow

from ebsdray.dataset_dir import generate_dataset
from ebsdray.distributed.train import fit
from ebsdray.training import TrainConfig

SMALL_DATASET = {
    "splits": {
        "train": [{"name": "a", "seed": 1, "shape": [8, 48, 48], "grain_size": 10}],
        "val": [{"name": "v", "seed": 2, "shape": [4, 32, 32], "grain_size": 10}],
    },
    "stage_angles": 36,
    "codec": {"pixels": 20000},
}


def small_dataset(data_dir: str | Path) -> str:
    """Write a small training / validation dataset to ``data_dir``; returns its path."""
    generate_dataset(SMALL_DATASET, data_dir)
    return str(data_dir)


def steps_per_s(
    data_dir: str, steps: int, workers: int, precision: str, batch: int, threads: int
) -> float:
    """Steady-state steps/s of one ``fit`` of the shipped architecture (``workers=0``: the
    plain loop in this process), from the loop's own ``steps_per_s`` at 6 log points."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cfg = TrainConfig(
            name=f"bench-{workers}",
            variant="multimodal",
            data_dir=data_dir,
            run_dir=f"{tmp}/run",
            batch_size=batch,
            steps=steps,
            val_interval=steps,
            val_windows=16,
            sample_count=0,
            log_interval=max(steps // 6, 1),
            precision=precision,
            threads=threads,
            tracking_uri=uri,
            experiment="bench",
        )
        fit(cfg, num_workers=workers, cpus_per_worker=threads, storage_path=f"{tmp}/ray")
        client = mlflow.MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
        history = client.get_metric_history(run.info.run_id, "steps_per_s")
        rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    return statistics.median(rates[1:] or rates)


def compare(
    data_dir: str, steps: int, precision: str, batch: int = 32, threads: int = 2
) -> dict[str, float]:
    """Plain loop and Ray Train (1 worker) steps/s and their ratio (``fit`` starts Ray when it
    is not running)."""
    plain = steps_per_s(data_dir, steps, 0, precision, batch, threads)
    ray_train = steps_per_s(data_dir, steps, 1, precision, batch, threads)
    return {
        "plain_steps_per_s": plain,
        "ray_train_steps_per_s": ray_train,
        "ratio": ray_train / plain,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="a dataset from jobs/generate_data.py (default: generate)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = a.data_dir or small_dataset(Path(tmp) / "data")
        r = compare(data_dir, a.steps, a.precision, a.batch, a.threads)
    print(
        f"plain loop {r['plain_steps_per_s']:.2f} steps/s, Ray Train (1 worker) "
        f"{r['ray_train_steps_per_s']:.2f} steps/s: ratio {r['ratio']:.3f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
