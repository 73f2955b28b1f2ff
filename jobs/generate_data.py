"""Generate the synthetic EBSD + PL dataset (train / val / test volumes, codec, quick-look figure).

python jobs/generate_data.py                       # default config, into $EBSDRAY_HOME/data
python jobs/generate_data.py output_dir=/abs/dir splits.train.0.shape=[64,256,256]
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from ebsdray.dataset_dir import generate_dataset


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate_data")
def main(cfg: DictConfig) -> None:
    plain = OmegaConf.to_container(cfg, resolve=True)
    data_cfg = {k: plain[k] for k in ("splits", "stage_angles", "codec")}
    manifest = generate_dataset(data_cfg, plain["output_dir"], overwrite=plain["overwrite"])
    n = {s: len(p) for s, p in manifest["stores"].items()}
    print(f"dataset: {plain['output_dir']}  volumes per split: {n}")
    print(f"quick-look figure: {plain['output_dir']}/{manifest['quicklook']}")


if __name__ == "__main__":
    main()
