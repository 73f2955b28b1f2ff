"""Throughput of the denoiser on this machine: evaluations/s, training steps/s, FLOPs, matmul peak.

Run::

    .venv/bin/python bench/bench_model.py                  # small config, 2 threads
    .venv/bin/python bench/bench_model.py --size paper --window 64 --batch 16
    .venv/bin/python bench/bench_model.py --base 32 --mults 1 2 2 --attn 1 2   # try a variant

``bench/suite.py`` imports the measurements below for the shipped model. Timings are medians of
per-call wall times, so a job briefly sharing the cores does not drag them down (check `uptime`
anyway). A training step is forward + backward + AdamW + EMA update on a (batch, C, window,
window) batch of random data (the speed does not depend on the data). Sampling throughput is
network evaluations per second (one evaluation = one image at one timestep) under
``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ebsdray.diffusion.ema import EMA
from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.model.unet import UNet, build_model, model_config, variant_channels
from ebsdray.precision import network_autocast


def median_seconds(fn: Callable[[], object], seconds: float, min_calls: int = 3) -> float:
    """Median wall time of ``fn`` over at least ``seconds`` and ``min_calls`` calls."""
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < min_calls:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(net: torch.nn.Module, batch: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, net.config.in_channels, window, window, generator=gen)
    return x, torch.full((batch,), 500)


def evals_per_s(
    net: torch.nn.Module,
    batch: int,
    window: int,
    precision: str,
    seconds: float,
    channels_last: bool = False,
) -> float:
    """Network evaluations per second at ``batch`` (one warm-up call first).

    Parameters
    ----------
    net : the denoiser, or ``torch.compile(denoiser)`` (the warm-up call compiles it).
    precision : "fp32" or "bf16" (autocast of the network, as the samplers run it).
    channels_last : feed ``x`` in channels-last memory format (the weights are converted by
        the caller: ``net.to(memory_format=torch.channels_last)``).
    """
    net.eval()
    x, t = _inputs(net, batch, window)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), network_autocast(precision, "cpu"):
        net(x, t)
        return batch / median_seconds(lambda: net(x, t), seconds)


def flops_per_eval(net: torch.nn.Module, window: int, batch: int = 4) -> float:
    """FLOPs of one evaluation (``FlopCounterMode``: matmuls, convolutions, attention; 2 per MAC)."""
    x, t = _inputs(net, batch, window)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x, t)
    return counter.get_total_flops() / batch


def matmul_peak(dtype: torch.dtype, seconds: float, n: int = 2048) -> float:
    """FLOP/s of an ``n x n`` ``torch.mm`` in ``dtype``: this machine's practical matmul peak."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    return 2 * n**3 / median_seconds(lambda: torch.mm(a, b), seconds)


def train_steps_per_s(net: UNet, batch: int, window: int, precision: str, seconds: float) -> float:
    """Training steps per second (forward, backward, AdamW, EMA) on random data."""
    sched = DiffusionSchedule()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    ema = EMA(net, decay=0.999)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, net.config.in_channels, window, window, generator=gen) * 2 - 1
    net.train()

    def step() -> None:
        with network_autocast(precision, "cpu"):
            loss = sched.training_loss(net, x0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net)

    for _ in range(3):  # warm-up: oneDNN primitive creation, allocator
        step()
    return 1.0 / median_seconds(step, seconds)


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
    flops = flops_per_eval(net, args.window)
    print(
        f"benchmarked: {args.variant} {cfg.to_dict()} = {n_params / 1e6:.3f} M parameters, "
        f"{flops / 1e6:.0f} MFLOP per evaluation, {args.threads} threads, window {args.window}"
    )
    for prec in ("fp32", "bf16"):
        sps = train_steps_per_s(net, args.batch, args.window, prec, args.seconds)
        print(f"train  {prec}: {sps:6.2f} steps/s at batch {args.batch}")
    for prec in ("fp32", "bf16"):
        eps = evals_per_s(net, args.sample_batch, args.window, prec, args.seconds)
        print(f"sample {prec}: {eps:7.1f} network evaluations/s at batch {args.sample_batch}")


if __name__ == "__main__":
    main()
