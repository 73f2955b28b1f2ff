"""Parameter counts, training and sampling throughput of the denoiser on this machine.

Run::

    .venv/bin/python bench/bench_model.py                  # small config, 2 threads
    .venv/bin/python bench/bench_model.py --size paper --window 64 --batch 16
    .venv/bin/python bench/bench_model.py --base 32 --mults 1 2 2 --attn 1 2   # try a variant

Timings are medians of per-step wall times, so a job briefly sharing the cores does not drag them
down (check `uptime` anyway). A training step is forward + backward + AdamW + EMA update on a (batch, C, window, window) batch
of random data (the speed does not depend on the data). Sampling throughput is network
evaluations per second (one evaluation = one image at one timestep) at batch 64 under
``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from ebsdray.diffusion.ema import EMA
from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.model.unet import UNet, build_model, model_config, variant_channels


def _amp(bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _median_seconds(fn: Callable[[], object], seconds: float) -> float:
    """Median wall time of ``fn``: robust to other jobs briefly sharing the 2 cores."""
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_steps_per_s(net: UNet, batch: int, window: int, bf16: bool, seconds: float) -> float:
    sched = DiffusionSchedule()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    ema = EMA(net, decay=0.999)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, net.config.in_channels, window, window, generator=gen) * 2 - 1
    net.train()

    def step() -> None:
        with _amp(bf16):
            loss = sched.training_loss(net, x0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net)

    for _ in range(3):  # warm-up: oneDNN primitive creation, allocator
        step()
    return 1.0 / _median_seconds(step, seconds)


def evals_per_s(net: UNet, batch: int, window: int, bf16: bool, seconds: float) -> float:
    net.eval()
    x = torch.randn(batch, net.config.in_channels, window, window)
    t = torch.full((batch,), 500)
    with torch.inference_mode(), _amp(bf16):
        net(x, t)
        return batch / _median_seconds(lambda: net(x, t), seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="small", choices=["small", "paper"])
    p.add_argument("--variant", default="multimodal", choices=["multimodal", "ebsd", "pl"])
    p.add_argument("--pl-channels", type=int, default=5)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0, help="timing length per measurement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base", type=int, help="override base_channels")
    p.add_argument("--mults", type=int, nargs="+", help="override channel_mults")
    p.add_argument("--blocks", type=int, help="override num_res_blocks")
    p.add_argument("--attn", type=int, nargs="*", help="override attention_levels")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    for variant in ("multimodal", "ebsd", "pl"):
        n = sum(q.numel() for q in build_model(variant, args.pl_channels, args.size).parameters())
        print(
            f"{variant:>10} ({variant_channels(variant, args.pl_channels)} ch) {args.size}: "
            f"{n / 1e6:.3f} M parameters"
        )

    overrides = dict(
        base_channels=args.base,
        channel_mults=args.mults,
        num_res_blocks=args.blocks,
        attention_levels=args.attn,
    )
    cfg = model_config(
        args.variant,
        args.pl_channels,
        args.size,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    net = UNet(cfg)
    n_params = sum(q.numel() for q in net.parameters())
    print(
        f"benchmarked: {args.variant} {cfg.to_dict()} = {n_params / 1e6:.3f} M parameters, "
        f"{args.threads} threads, window {args.window}"
    )
    for bf16 in (False, True):
        tag = "bf16 autocast" if bf16 else "fp32         "
        sps = train_steps_per_s(net, args.batch, args.window, bf16, args.seconds)
        print(f"train  {tag}: {sps:6.2f} steps/s at batch {args.batch}")
    for bf16 in (False, True):
        tag = "bf16 autocast" if bf16 else "fp32         "
        eps = evals_per_s(net, args.sample_batch, args.window, bf16, args.seconds)
        print(f"sample {tag}: {eps:7.1f} network evaluations/s at batch {args.sample_batch}")


if __name__ == "__main__":
    main()
