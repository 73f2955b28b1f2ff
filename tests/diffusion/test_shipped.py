"""The default models shipped inside the package load by name and fit their codec."""

import pytest
import torch
import yaml

import ebsdray
from ebsdray.diffusion.pretrained import WEIGHTS_DIR


@pytest.mark.parametrize("name", ["multimodal", "ebsd", "pl"])
def test_shipped_model_loads_by_name(name):
    model = ebsdray.load_model(name)
    assert model.variant == name and model.source == name
    assert model.window == 32 and model.codec.pl_channels == 5
    # Its card beside the weights states the same training facts, those of a finished run
    # (9,000 steps of the wider multimodal network, 14,000 of the unimodal ones), not a smoke test.
    card = yaml.safe_load((WEIGHTS_DIR / f"{name}.yaml").read_text())
    assert card["provenance"] == model.provenance
    assert model.provenance["step"] >= 9_000 and model.provenance["final_val_loss"] < 0.03
    with torch.inference_mode():
        eps = model(torch.zeros(1, model.channels, 32, 32), torch.tensor([500]))
    assert eps.shape == (1, model.channels, 32, 32) and torch.isfinite(eps).all()
