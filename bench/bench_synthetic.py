"""Time the synthetic data path: a 64 x 256 x 256 volume and its PL at every voxel.

    .venv/bin/python bench/bench_synthetic.py [--shape 64 256 256] [--repeat 3]

Prints seconds per stage (best of ``--repeat``) and the volume's statistics.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, volume_pl


def _best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(args.shape)

    cases = {
        "uniform": {},
        "macrozones": {"texture": {"kind": "macrozones"}},
        "elongated+intragranular": {"stretch": (1, 1, 3), "intragranular_spread_deg": 2.0},
    }
    for name, options in cases.items():
        t_vol, vol = _best(lambda o=options: synthetic_volume(shape, seed=0, **o), args.repeat)
        t_pl, pl = _best(lambda v=vol: volume_pl(v), args.repeat)
        path = "per voxel" if options.get("intragranular_spread_deg") else "per grain"
        print(
            f"{name:>24}: volume {shape} {t_vol:6.2f} s | PL (D,H,W,36) {t_pl:6.2f} s ({path})"
            f" | grains {vol.attrs['n_grains']}, section 0: {len(np.unique(vol.grain_ids[0]))}"
            f" | PL range [{pl.min():.2e}, {pl.max():.2e}]"
        )
    vol = synthetic_volume(shape, seed=0)
    t_vox, _ = _best(lambda: volume_pl(vol, per_grain=False), args.repeat)
    t_sec, _ = _best(lambda: pl_intensities(vol.quaternions[0]), args.repeat)
    print(f"PL per voxel, whole volume: {t_vox:.2f} s; one section (H, W, 36): {t_sec:.3f} s")


if __name__ == "__main__":
    main()
