"""Write the ingest walkthrough's input files from the shipped real map, then print the ingest
command that reads them.

    python jobs/make_example_files.py output_dir=/abs/example

Config: configs/make_example_files.yaml. The work is in :mod:`ebsdray.ingest.example`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from ebsdray.ingest.example import make_example_files


@hydra.main(version_base="1.3", config_path="../configs", config_name="make_example_files")
def main(cfg: DictConfig) -> None:
    plain = OmegaConf.to_container(cfg, resolve=True)
    facts = make_example_files(plain["output_dir"], noise=plain["noise"], seed=plain["seed"])
    print(f"example files in {plain['output_dir']} (see example.json)")
    print("ingest them with:")
    print("  python jobs/ingest.py " + " ".join(f"'{o}'" for o in facts["ingest_overrides"]))


if __name__ == "__main__":
    main()
