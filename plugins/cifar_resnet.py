"""Built-in plugin: the CIFAR ResNet family (He et al. 2016, §4.2) as timm-compatible architectures.

Registers ``resnet{20,32,44,56,110}_cifar`` so checkpoints such as
``shared/models/resnet20_cifar10.safetensors`` load like any timm model
(``file:.../resnet20_cifar10.safetensors?arch=resnet20_cifar``). The torch code lives in
``cifar_resnet_arch``; it is imported only when the hook runs (lazily, the first time a model is
built), so importing this module -- and starting the CLI -- does not import torch.
"""

from advisor.hookspecs import hookimpl

ARCHS = ("resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar")


@hookimpl
def register_architectures(register):
    from advisor.plugins import cifar_resnet_arch as arch

    for name in ARCHS:
        register(name, getattr(arch, name), arch.CIFAR_RESNET_CFG)
