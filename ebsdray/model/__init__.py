"""ebsdray.model: the denoiser network only, seen by the rest of the package as ``eps = net(x_t, t)``."""

from ebsdray.model.unet import (
    VARIANTS,
    UNet,
    UNetConfig,
    build_model,
    model_config,
    variant_channels,
)

__all__ = ["VARIANTS", "UNet", "UNetConfig", "build_model", "model_config", "variant_channels"]
