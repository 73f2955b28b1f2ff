"""Model-card measurements: quality of unconditional samples next to real synthetic data.

* grain coherence: fraction of 4-neighbour pixel pairs within 5 degrees (samples vs real windows);
* cross-modal physics (multimodal only): the PL channels against the PL the forward model computes
  from the same sample's decoded EBSD, next to randomly paired EBSD and PL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ebsdray.data.dataset import WindowDataset
from ebsdray.dataset_dir import load_split
from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.diffusion.schedule import unconditional_sample
from ebsdray.figures import samples_figure
from ebsdray.training.quality import cross_modal_error, grain_coherence


def _measures(x: np.ndarray, model: DiffusionModel, prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    codec = model.codec
    layout = codec.layout(model.variant)
    if layout.has_ebsd:
        q = codec.decode_ebsd(np.moveaxis(x[:, layout.ebsd], 1, -1))
        out[f"{prefix}_grain_coherence"] = grain_coherence(q)
    if layout.has_ebsd and layout.has_pl:
        out[f"{prefix}_cross_modal_error"] = cross_modal_error(codec, x)
        out[f"{prefix}_cross_modal_error_random_pairs"] = cross_modal_error(codec, x, shift=1)
    return out


def unconditional_quality(
    model: DiffusionModel,
    data_dir: str | Path,
    *,
    samples: int = 64,
    steps: int = 100,
    seed: int = 0,
    precision: str = "auto",
    split: str = "test",
    figure_path: str | Path | None = None,
) -> dict[str, Any]:
    """Draw ``samples`` unconditional samples and measure them against real windows of ``split``.

    Returns
    -------
    dict with ``sample_*`` and ``real_*`` measures, ``seconds_per_sample`` and the settings.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (samples, model.channels, model.window, model.window)
    t0 = time.perf_counter()
    x = unconditional_sample(model.net, model.schedule, shape, steps, gen, precision=precision)
    seconds = time.perf_counter() - t0
    x = x.float().numpy()
    volumes, _ = load_split(data_dir, split)
    real = WindowDataset(volumes, model.codec, model.window, model.variant, axes=(0,)).batch(
        samples, seed=seed
    )
    out: dict[str, Any] = {
        "variant": model.variant,
        "samples": samples,
        "steps": steps,
        "seconds_per_sample": seconds / samples,
        **_measures(x, model, "sample"),
        **_measures(real.numpy(), model, "real"),
    }
    if figure_path is not None:
        fig = samples_figure(x[:16], model.codec, model.variant)
        Path(figure_path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure_path, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
        out["figure"] = str(figure_path)
    return out
