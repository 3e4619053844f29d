"""Built-in plugin: small architectures from other pre-training domains (digits, faces, CIFAR-10).

Registers, through the same ``register_architectures`` hook a third-party plugin uses:

- ``ccexam_mnist_cnn``, ``ccexam_usps_cnn``, ``ccexam_svhn_cnn``, ``keras_cifar10_cnn``
  (:mod:`advisor.plugins.flat_cnn_arch`: CNNs whose head reads a flattened map, so their input
  size is fixed);
- ``mini_xception`` (:mod:`advisor.plugins.mini_xception_arch`, Arriaga et al. 2017).

Their preprocessing is in :data:`CFGS` (timm's pretrained-cfg keys). Two things in it go beyond
ImageNet habits and are handled by the product in general, not per model: 1-channel input
(``input_size`` ``(1, H, W)``: colour probes are fed as grey), and preprocessing that is not a
mean/std on [0, 1] — any per-channel affine map is one (raw 0-255 input: mean 0, std 1/255).
The torch code is imported only when a model is built, so this module stays light.
"""

from functools import partial
from typing import Any, Dict

from advisor.hookspecs import hookimpl

_GREY_28 = {"input_size": (1, 28, 28), "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}

CFGS: Dict[str, Dict[str, Any]] = {
    "ccexam_mnist_cnn": {**_GREY_28, "mean": (0.1307,), "std": (0.3081,), "fixed_input_size": True,
                         "num_classes": 10, "first_conv": "features.0", "classifier": "classifier.2", "license": "mit"},
    "ccexam_usps_cnn": {**_GREY_28, "input_size": (1, 16, 16), "mean": (0.2471,), "std": (0.2994,), "fixed_input_size": True,
                        "num_classes": 10, "first_conv": "features.0", "classifier": "classifier.4", "license": "mit"},
    "ccexam_svhn_cnn": {**_GREY_28, "input_size": (3, 32, 32), "mean": (0.4377, 0.4438, 0.4728), "std": (0.1980, 0.2010, 0.1970),
                        "fixed_input_size": True, "num_classes": 10, "first_conv": "features.0.0", "classifier": "classifier.4",
                        "license": "mit"},
    # raw 0-255 pixels: (x/255 - 0) / (1/255) = x
    "keras_cifar10_cnn": {**_GREY_28, "input_size": (3, 32, 32), "mean": (0.0, 0.0, 0.0), "std": (1 / 255,) * 3,
                          "fixed_input_size": True, "num_classes": 10, "first_conv": "features.0", "classifier": "classifier.4"},
    # x/255 then (x - 0.5) * 2
    "mini_xception": {**_GREY_28, "input_size": (1, 64, 64), "mean": (0.5,), "std": (0.5,), "num_classes": 7,
                      "first_conv": "stem.0", "classifier": "head", "license": "mit"},
}

def cfg_for(name: str, in_chans: int) -> Dict[str, Any]:
    """``name``'s cfg for a model built with ``in_chans`` input channels: ``input_size`` follows,
    and the per-channel mean/std are averaged over the source's channels and repeated."""
    cfg = dict(CFGS[name], architecture=name)
    if in_chans != cfg["input_size"][0]:
        k = in_chans
        cfg.update(input_size=(k, *cfg["input_size"][1:]),
                   mean=(sum(cfg["mean"]) / len(cfg["mean"]),) * k, std=(sum(cfg["std"]) / len(cfg["std"]),) * k)
    return cfg


_MODULES = {name: "flat_cnn_arch" for name in ("ccexam_mnist_cnn", "ccexam_usps_cnn", "ccexam_svhn_cnn", "keras_cifar10_cnn")}
_MODULES["mini_xception"] = "mini_xception_arch"


def build(name: str, pretrained: bool = False, **kwargs):
    """Factory for ``name``; imports the torch code on first use."""
    import importlib

    module = importlib.import_module(f"advisor.plugins.{_MODULES[name]}")
    return getattr(module, name)(pretrained=pretrained, **kwargs)


@hookimpl
def register_architectures(register):
    for name, cfg in CFGS.items():
        register(name, partial(build, name), cfg)
