"""The training loop: a plain function; Ray Train runs the same function in each worker.

    from ebsdray.training import TrainConfig, train
    train(TrainConfig(name="demo", variant="multimodal", data_dir=..., run_dir=..., steps=200))

Rank 0 writes ``run_dir/last.pt`` and ``run_dir/metrics.json`` at every validation and
``run_dir/best.pt`` when the validation loss improves; a run whose ``run_dir`` holds ``last.pt`` resumes from it (weights, EMA, optimizer,
step, data and noise streams re-seeded from the step, MLflow run continued).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.dataset import WindowDataset
from ebsdray.dataset_dir import load_split
from ebsdray.diffusion.ema import EMA
from ebsdray.diffusion.schedule import DiffusionSchedule, unconditional_sample
from ebsdray.figures import samples_figure
from ebsdray.io.checkpoint import load_checkpoint, save_checkpoint
from ebsdray.model.unet import UNet, model_config
from ebsdray.precision import network_autocast
from ebsdray.training.config import TrainConfig
from ebsdray.training.quality import cross_modal_error, grain_coherence
from ebsdray.training.tracker import Tracker


class WorkerContext(Protocol):
    """What the loop needs from its runtime (plain process or Ray Train worker)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, net: nn.Module) -> nn.Module: ...

    def report(self, metrics: dict[str, float]) -> None: ...


@dataclass
class LocalContext:
    """A single process, no Ray: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(
        default_factory=lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )

    def prepare(self, net: nn.Module) -> nn.Module:
        return net

    def report(self, metrics: dict[str, float]) -> None:
        pass


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _autocast(cfg: TrainConfig, device: torch.device):
    return network_autocast(cfg.precision, device)


@torch.no_grad()
def validation_loss(
    net: nn.Module, schedule: DiffusionSchedule, x0: torch.Tensor, cfg: TrainConfig, seed: int
) -> float:
    """Epsilon loss on a fixed set with fixed timesteps and noise (comparable across runs)."""
    net.eval()
    gen = torch.Generator(x0.device).manual_seed(seed)
    losses = []
    for chunk in x0.split(64):
        with _autocast(cfg, x0.device):
            losses.append(schedule.training_loss(net, chunk, gen, reduction="none"))
    net.train()
    return float(torch.cat(losses).mean())


def _checkpoint(
    cfg: TrainConfig, net: nn.Module, ema: EMA, ema_net: nn.Module, codec: ChannelCodec
) -> dict[str, Any]:
    return {
        "variant": cfg.variant,
        "model_config": net.config.to_dict(),
        "codec": codec.to_dict(),
        "schedule": {"num_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02},
        "window": cfg.window,
        "weights": net.state_dict(),
        "ema_weights": ema_net.state_dict(),
    }


def _resume(path: Path, cfg: TrainConfig, net: UNet, codec: ChannelCodec) -> dict[str, Any]:
    ckpt = load_checkpoint(path)
    if (
        ckpt["variant"] != cfg.variant
        or ckpt["model_config"] != net.config.to_dict()
        or ChannelCodec.from_dict(ckpt["codec"]) != codec
    ):
        raise ValueError(
            f"{path} belongs to a different model or dataset (variant, architecture or codec "
            "differ); choose another run name or run_dir to start a new run"
        )
    return ckpt


def train(cfg: TrainConfig, context: WorkerContext | None = None) -> dict[str, float]:
    """Train one denoiser; returns the final metrics (``step``, ``val_loss``, ``best_val_loss``)."""
    ctx = context or LocalContext()
    device = ctx.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    volumes, codec = load_split(cfg.data_dir, "train")
    val_volumes, _ = load_split(cfg.data_dir, "val")
    arch = model_config(cfg.variant, codec.pl_channels, cfg.model_size, **cfg.architecture)
    if cfg.window % arch.downsample_factor:
        raise ValueError(
            f"window {cfg.window} must be a multiple of {arch.downsample_factor} for this network"
        )
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    net = UNet(arch).to(device)
    ema_net = UNet(arch).to(device)
    schedule = DiffusionSchedule()
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    run_dir = Path(cfg.run_dir).expanduser().resolve()
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    start, best, run_id = 0, math.inf, None
    if last_path.exists():
        ckpt = _resume(last_path, cfg, net, codec)
        state = ckpt["train_state"]
        net.load_state_dict(ckpt["weights"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        start, best, run_id = state["step"], state["best_val_loss"], state.get("mlflow_run_id")
        if ctx.rank == 0:
            print(f"resuming {cfg.name} from step {start} ({last_path})")
    model = ctx.prepare(net)

    # Data and noise streams depend on (seed, rank, start step): a resumed run is reproducible.
    data = WindowDataset(
        volumes, codec, cfg.window, cfg.variant, seed=_seed(cfg.seed, ctx.rank, start)
    )
    batches = iter(DataLoader(data, batch_size=cfg.batch_size, num_workers=0))
    gen = torch.Generator(device).manual_seed(_seed(cfg.seed, 1, ctx.rank, start))
    val_x0 = WindowDataset(val_volumes, codec, cfg.window, cfg.variant).batch(
        cfg.val_windows, seed=_seed(cfg.seed, 2)
    )
    val_x0 = val_x0.to(device)

    tracker = Tracker(cfg, run_id) if ctx.rank == 0 else None
    metrics: dict[str, float] = {"step": start, "best_val_loss": best}
    running, t_last, n_last = 0.0, time.perf_counter(), start
    progress = tqdm(
        total=cfg.steps, initial=start, desc=cfg.name, disable=ctx.rank != 0, mininterval=5.0
    )
    model.train()
    for step in range(start, cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        x0 = next(batches).to(device, non_blocking=True)
        with _autocast(cfg, device):
            loss = schedule.training_loss(model, x0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip))
        opt.step()
        ema.update(net)
        running += float(loss.detach())
        done = step + 1
        progress.update(1)

        if tracker and done % cfg.log_interval == 0:
            now = time.perf_counter()
            tracker.log(
                {
                    "train_loss": running / cfg.log_interval,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "steps_per_s": (done - n_last) / (now - t_last),
                },
                done,
            )
            progress.set_postfix(loss=f"{running / cfg.log_interval:.4f}", refresh=False)
            running, t_last, n_last = 0.0, now, done

        if done % cfg.val_interval == 0 or done == cfg.steps:
            ema.copy_to(ema_net)
            val = validation_loss(ema_net, schedule, val_x0, cfg, seed=_seed(cfg.seed, 3))
            improved = val < best
            best = min(best, val)
            metrics = {"step": done, "val_loss": val, "best_val_loss": best}
            if tracker:
                metrics.update(_sample_quality(cfg, ema_net, schedule, codec, tracker, done))
                ckpt = _checkpoint(cfg, net, ema, ema_net, codec)
                ckpt["train_state"] = {
                    "step": done,
                    "best_val_loss": best,
                    "optimizer": opt.state_dict(),
                    "ema": ema.state_dict(),
                    "mlflow_run_id": tracker.run_id,
                    "config": cfg.to_dict(),
                }
                save_checkpoint(ckpt, last_path)
                if improved:
                    save_checkpoint(ckpt, best_path)
                (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
                tracker.log(metrics, done)
                print(f"[{cfg.name}] step {done}/{cfg.steps} val_loss {val:.4f} best {best:.4f}")
            ctx.report(metrics)
    progress.close()
    if tracker:
        tracker.finish(best_path)
    return metrics


def _sample_quality(
    cfg: TrainConfig,
    ema_net: nn.Module,
    schedule: DiffusionSchedule,
    codec: ChannelCodec,
    tracker: Tracker,
    step: int,
) -> dict[str, float]:
    """Draw unconditional samples, log their figure and (where defined) quality measures."""
    if cfg.sample_count < 1:
        return {}
    gen = torch.Generator(next(ema_net.parameters()).device).manual_seed(_seed(cfg.seed, 4))
    shape = (cfg.sample_count, ema_net.config.in_channels, cfg.window, cfg.window)
    x = unconditional_sample(
        ema_net, schedule, shape, cfg.sample_steps, gen, precision=cfg.precision
    )
    x = x.float().cpu().numpy()
    tracker.figure(samples_figure(x, codec, cfg.variant), f"samples/step_{step:07d}.png")
    out: dict[str, float] = {}
    if cfg.variant in ("multimodal", "ebsd"):
        out["sample_grain_coherence"] = grain_coherence(
            codec.decode_ebsd(np.moveaxis(x[:, :3], 1, -1))
        )
    if cfg.variant == "multimodal" and len(x) > 1:
        out["sample_cross_modal_error"] = cross_modal_error(codec, x)
        out["sample_cross_modal_error_random_pairs"] = cross_modal_error(codec, x, shift=1)
    return out
