"""Model-card figures of a trained model: grain coherence and cross-modal physics of samples.

python jobs/model_card.py checkpoint=multimodal samples=64 steps=100
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ebsdray.diffusion.pretrained import load_model
from ebsdray.training.card import unconditional_quality


@hydra.main(version_base="1.3", config_path="../configs", config_name="model_card")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    model = load_model(c["checkpoint"])
    name = Path(str(c["checkpoint"])).stem if "/" in str(c["checkpoint"]) else c["checkpoint"]
    out_dir = Path(c["output_dir"]) / name
    result = unconditional_quality(
        model,
        c["data_dir"],
        samples=c["samples"],
        steps=c["steps"],
        seed=c["seed"],
        precision=c["precision"],
        split=c["split"],
        figure_path=out_dir / "samples.png",
    )
    result["provenance"] = model.provenance
    (out_dir / "quality.json").write_text(json.dumps(result, indent=1, default=str))
    for key, value in result.items():
        print(f"{key:45s} {value}")
    print(f"written: {out_dir}/quality.json and samples.png")


if __name__ == "__main__":
    main()
