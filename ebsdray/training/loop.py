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
from collections.abc import Iterator
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
from ebsdray.data.volume import Volume
from ebsdray.dataset_dir import load_split
from ebsdray.diffusion.ema import EMA
from ebsdray.diffusion.pretrained import model_path
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


@dataclass
class _Run:
    """One rank's training state: the networks, EMA, optimizer and where the run stands."""

    cfg: TrainConfig
    codec: ChannelCodec
    net: UNet
    ema_net: UNet
    ema: EMA
    opt: torch.optim.Optimizer
    schedule: DiffusionSchedule
    run_dir: Path
    start: int = 0
    best: float = math.inf
    run_id: str | None = None

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"


def _build(cfg: TrainConfig, device: torch.device) -> tuple[_Run, list[Volume], list[Volume]]:
    """Fresh networks, EMA and optimizer for ``cfg``, and the train and val volumes."""
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
    run = _Run(
        cfg=cfg,
        codec=codec,
        net=net,
        ema_net=ema_net,
        schedule=DiffusionSchedule(),
        ema=EMA(net, cfg.ema_decay),
        opt=torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        run_dir=Path(cfg.run_dir).expanduser().resolve(),
    )
    return run, volumes, val_volumes


def _check_compatible(run: _Run, ckpt: dict[str, Any], path: Path, what: str) -> None:
    """Refuse a checkpoint whose variant, architecture or codec is not the run's."""
    if (
        ckpt["variant"] != run.cfg.variant
        or ckpt["model_config"] != run.net.config.to_dict()
        or ChannelCodec.from_dict(ckpt["codec"]) != run.codec
    ):
        raise ValueError(
            f"{path} belongs to a different model or dataset (variant, architecture or codec "
            f"differ); {what}"
        )


def _resume(run: _Run, rank: int) -> None:
    """Continue from the run dir's ``last.pt`` (weights, EMA, optimizer, step)."""
    ckpt = load_checkpoint(run.last_path)
    _check_compatible(run, ckpt, run.last_path, "choose another run name or run_dir")
    state = ckpt["train_state"]
    run.net.load_state_dict(ckpt["weights"])
    run.ema.load_state_dict(state["ema"])
    run.opt.load_state_dict(state["optimizer"])
    run.start, run.best = state["step"], state["best_val_loss"]
    run.run_id = state.get("mlflow_run_id")
    if rank == 0:
        print(f"resuming {run.cfg.name} from step {run.start} ({run.last_path})")


def _initialise(run: _Run, rank: int) -> None:
    """Start from the weights and EMA of ``cfg.init_from`` (step 0, fresh optimizer)."""
    path = model_path(run.cfg.init_from)
    if not path.exists():
        raise FileNotFoundError(
            f"init_from={run.cfg.init_from!r}: no checkpoint at {path}; name a shipped model "
            "(multimodal, ebsd, pl) or the path of a run's best.pt"
        )
    ckpt = load_checkpoint(path)
    _check_compatible(
        run, ckpt, path, "fine-tune only a model of this variant, size and dataset codec"
    )
    # Exported models keep only the EMA weights; training then continues from those.
    run.net.load_state_dict(ckpt.get("weights", ckpt["ema_weights"]))
    # The EMA starts at the model's sampling weights and does not warm up again: a fresh
    # average would forget them within a few dozen steps.
    run.ema.load_state_dict(
        {
            "decay": run.cfg.ema_decay,
            "warmup": False,
            "num_updates": 0,
            "shadow": ckpt["ema_weights"],
        }
    )
    if rank == 0:
        print(f"{run.cfg.name}: starting from the weights of {path}")


def _streams(
    run: _Run, volumes: list[Volume], val_volumes: list[Volume], rank: int, device: torch.device
) -> tuple[Iterator[torch.Tensor], torch.Generator, torch.Tensor]:
    """Training batches, the training noise generator and the fixed validation windows.

    Returns
    -------
    batches : iterator of (B, C, window, window) training windows.
    gen : generator for the training timesteps and noise, on ``device``.
    val_x0 : (val_windows, C, window, window) validation windows on ``device``.
    """
    cfg = run.cfg
    # Data and noise streams depend on (seed, rank, start step): a resumed run is reproducible.
    data = WindowDataset(
        volumes, run.codec, cfg.window, cfg.variant, seed=_seed(cfg.seed, rank, run.start)
    )
    batches = iter(DataLoader(data, batch_size=cfg.batch_size, num_workers=0))
    gen = torch.Generator(device).manual_seed(_seed(cfg.seed, 1, rank, run.start))
    val_x0 = WindowDataset(val_volumes, run.codec, cfg.window, cfg.variant).batch(
        cfg.val_windows, seed=_seed(cfg.seed, 2)
    )
    return batches, gen, val_x0.to(device)


def _train_step(
    run: _Run, model: nn.Module, x0: torch.Tensor, gen: torch.Generator, step: int
) -> tuple[float, float, float]:
    """One optimizer and EMA step on the batch ``x0`` (B, C, H, W) at 0-based ``step``.

    ``model`` is ``run.net`` as the context prepared it (wrapped for data parallelism).
    Returns the loss, the learning rate (``cfg.learning_rate``) and the gradient norm before clipping.
    """
    cfg = run.cfg
    lr = cfg.learning_rate(step)
    for group in run.opt.param_groups:
        group["lr"] = lr
    with _autocast(cfg, x0.device):
        loss = run.schedule.training_loss(model, x0, gen)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(run.net.parameters(), cfg.grad_clip))
    run.opt.step()
    run.ema.update(run.net)
    return float(loss.detach()), lr, grad_norm


class _TrainLog:
    """The progress bar, and on rank 0 the mean training loss, lr, gradient norm and speed
    logged every ``log_interval`` steps."""

    def __init__(self, cfg: TrainConfig, tracker: Tracker | None, start: int, rank: int) -> None:
        self.cfg, self.tracker = cfg, tracker
        self.running, self.t_last, self.n_last = 0.0, time.perf_counter(), start
        self.progress = tqdm(
            total=cfg.steps, initial=start, desc=cfg.name, disable=rank != 0, mininterval=5.0
        )

    def step(self, done: int, loss: float, lr: float, grad_norm: float) -> None:
        """Account for the step that brought the run to ``done`` steps."""
        self.running += loss
        self.progress.update(1)
        if not self.tracker or done % self.cfg.log_interval:
            return
        now = time.perf_counter()
        mean = self.running / self.cfg.log_interval
        self.tracker.log(
            {
                "train_loss": mean,
                "lr": lr,
                "grad_norm": grad_norm,
                "steps_per_s": (done - self.n_last) / (now - self.t_last),
            },
            done,
        )
        self.progress.set_postfix(loss=f"{mean:.4f}", refresh=False)
        self.running, self.t_last, self.n_last = 0.0, now, done

    def close(self) -> None:
        self.progress.close()


def _save(run: _Run, tracker: Tracker, done: int, improved: bool) -> None:
    """Write ``last.pt`` (and ``best.pt`` if ``improved``) with what a resume needs."""
    ckpt = _checkpoint(run.cfg, run.net, run.ema, run.ema_net, run.codec)
    ckpt["train_state"] = {
        "step": done,
        "best_val_loss": run.best,
        "optimizer": run.opt.state_dict(),
        "ema": run.ema.state_dict(),
        "mlflow_run_id": tracker.run_id,
        "config": run.cfg.to_dict(),
    }
    save_checkpoint(ckpt, run.last_path)
    if improved:
        save_checkpoint(ckpt, run.best_path)


def _validate(
    run: _Run, val_x0: torch.Tensor, tracker: Tracker | None, done: int
) -> dict[str, float]:
    """Validation loss of the EMA weights after ``done`` steps on ``val_x0`` (N, C, H, W); rank 0
    (the one with a ``tracker``) also samples, checkpoints, writes ``metrics.json`` and logs."""
    cfg = run.cfg
    run.ema.copy_to(run.ema_net)
    val = validation_loss(run.ema_net, run.schedule, val_x0, cfg, seed=_seed(cfg.seed, 3))
    improved = val < run.best
    run.best = min(run.best, val)
    metrics = {"step": done, "val_loss": val, "best_val_loss": run.best}
    if tracker:
        metrics.update(_sample_quality(cfg, run.ema_net, run.schedule, run.codec, tracker, done))
        _save(run, tracker, done, improved)
        (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        tracker.log(metrics, done)
        print(f"[{cfg.name}] step {done}/{cfg.steps} val_loss {val:.4f} best {run.best:.4f}")
    return metrics


def train(cfg: TrainConfig, context: WorkerContext | None = None) -> dict[str, float]:
    """Train one denoiser, resuming from ``run_dir/last.pt`` where there is one.

    Parameters
    ----------
    cfg : the run: data, network, optimizer, schedule of validation and logging.
    context : the runtime (rank, world size, device); ``None`` = one local process.

    Returns
    -------
    dict
        The last validation's metrics: ``step``, ``val_loss``, ``best_val_loss`` and, on rank 0,
        the sample quality measures; ``step`` and ``best_val_loss`` only if the run was done.
    """
    ctx = context or LocalContext()
    run, volumes, val_volumes = _build(cfg, ctx.device)
    if run.last_path.exists():
        _resume(run, ctx.rank)
    elif cfg.init_from:
        _initialise(run, ctx.rank)
    model = ctx.prepare(run.net)
    batches, gen, val_x0 = _streams(run, volumes, val_volumes, ctx.rank, ctx.device)
    tracker = Tracker(cfg, run.run_id) if ctx.rank == 0 else None
    metrics: dict[str, float] = {"step": run.start, "best_val_loss": run.best}
    log = _TrainLog(cfg, tracker, run.start, ctx.rank)
    model.train()
    for step in range(run.start, cfg.steps):
        x0 = next(batches).to(ctx.device, non_blocking=True)
        loss, lr, grad_norm = _train_step(run, model, x0, gen, step)
        done = step + 1
        log.step(done, loss, lr, grad_norm)
        if done % cfg.val_interval == 0 or done == cfg.steps:
            metrics = _validate(run, val_x0, tracker, done)
            ctx.report(metrics)
    log.close()
    if tracker:
        tracker.finish(run.best_path)
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
    layout = codec.layout(cfg.variant)
    if layout.has_ebsd:
        out["sample_grain_coherence"] = grain_coherence(
            codec.decode_ebsd(np.moveaxis(x[:, layout.ebsd], 1, -1))
        )
    if layout.has_ebsd and layout.has_pl and len(x) > 1:
        out["sample_cross_modal_error"] = cross_modal_error(codec, x)
        out["sample_cross_modal_error_random_pairs"] = cross_modal_error(codec, x, shift=1)
    return out
