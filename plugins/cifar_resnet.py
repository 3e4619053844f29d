"""Built-in plugin: the CIFAR ResNet family (He et al. 2016, §4.2) as timm-compatible architectures.

Registers ``resnet{20,32,44,56,110}_cifar`` so checkpoints such as
``shared/models/resnet20_cifar10.safetensors`` load like any timm model
(``file:.../resnet20_cifar10.safetensors?arch=resnet20_cifar``). The torch code lives in
``cifar_resnet_arch`` and is imported only when a model is built, so importing this module, running
the hook (e.g. ``advisor plugins``) and starting the CLI do not import torch.
"""

from functools import partial
from typing import Any, Dict

from advisor.hookspecs import hookimpl

ARCHS = ("resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar")

# timm-style pretrained cfg (preprocessing of the akamaster checkpoints: 32 px, ImageNet mean/std).
CIFAR_RESNET_CFG: Dict[str, Any] = {
    "input_size": (3, 32, 32),
    "pool_size": (8, 8),
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
    "num_classes": 10,
    "first_conv": "conv1",
    "classifier": "linear",
    "license": "bsd-2-clause",
}


def build(name: str, pretrained: bool = False, **kwargs):
    """Factory for ``name``; imports the torch code on first use."""
    from advisor.plugins import cifar_resnet_arch as arch

    return getattr(arch, name)(pretrained=pretrained, **kwargs)


@hookimpl
def register_architectures(register):
    for name in ARCHS:
        register(name, partial(build, name), CIFAR_RESNET_CFG)
