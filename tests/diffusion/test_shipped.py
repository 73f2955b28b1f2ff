"""The default models shipped inside the package load by name and fit their codec."""

import pytest
import torch

import ebsdray


@pytest.mark.parametrize("name", ["multimodal", "ebsd", "pl"])
def test_shipped_model_loads_by_name(name):
    model = ebsdray.load_model(name)
    assert model.variant == name and model.source == name
    assert model.window == 32 and model.codec.pl_channels == 5
    assert model.provenance["step"] == 14_000
    with torch.inference_mode():
        eps = model(torch.zeros(1, model.channels, 32, 32), torch.tensor([500]))
    assert eps.shape == (1, model.channels, 32, 32) and torch.isfinite(eps).all()
