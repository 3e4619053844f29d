"""CIFAR ResNet (He et al. 2016, §4.2) with timm's feature API.
Size: ~310 lines; one architecture with timm's whole feature API (feature_info, forward_intermediates, forward_head) and its checkpoint filter.

The architecture of the checkpoints in ``shared/models/resnet{20,32,44,56}_cifar10.safetensors``
(from akamaster/pytorch_resnet_cifar10): depth = 6n + 2, a 3x3 stem with 16 channels, three stages
of n basic blocks (widths 16/32/64, the first block of stages 2 and 3 has stride 2), the
parameter-free "option A" shortcut, global average pooling and a ``linear`` head.

State-dict keys match the checkpoints exactly: ``conv1.weight``, ``bn1.*``,
``layer{1,2,3}.{j}.conv{1,2}.weight``, ``layer{1,2,3}.{j}.bn{1,2}.*``, ``linear.*``. The only
modules that are not in the checkpoints (``act1``, each block's ``shortcut``) hold no state.

timm-compatible surface: ``feature_info``, ``forward_intermediates``,
``prune_intermediate_layers``, ``forward_features``, ``forward_head``, ``get_classifier``,
``reset_classifier``, ``num_classes``, ``num_features``, ``pretrained_cfg``/``default_cfg``.

This module imports torch; the plugin module (``cifar_resnet.py``) imports it lazily.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models._features import feature_take_indices

__all__ = [
    "CIFAR_RESNET_CFG",
    "CifarResNet",
    "resnet20_cifar",
    "resnet32_cifar",
    "resnet44_cifar",
    "resnet56_cifar",
    "resnet110_cifar",
]

from advisor.plugins.cifar_resnet import CIFAR_RESNET_CFG  # noqa: E402  (one cfg, light module)

WIDTHS = (16, 32, 64)


def _fill_missing_num_batches_tracked(module, state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs):
    """Load pre-hook of every BatchNorm2d: supply ``num_batches_tracked`` when a checkpoint lacks it.

    BatchNorm2d(track_running_stats=True) always owns a ``num_batches_tracked`` buffer, but the
    CIFAR checkpoints were saved without it, so a strict load would report 7+ missing keys. The
    counter is only consulted when ``momentum=None`` (cumulative averaging), never in eval, so
    filling it loses nothing. We fill it only when the BN's other statistics *are* present (a
    checkpoint that lacks the whole layer still fails strict loading), and we keep the module's
    current value, like torch does for pre-v2 BatchNorm state dicts. ``load_state_dict`` works on a
    shallow copy of the caller's dict, so the caller's dict is not modified.

    (torch's own ``_NormBase._load_from_state_dict`` already fills the key when the state dict
    carries no ``_metadata`` version -- the case of a plain dict from safetensors -- but not for a
    state dict that carries version-2 metadata, e.g. one round-tripped through another module's
    ``state_dict()`` with the counters removed. The hook makes strict loading work in every case
    without overriding the private ``_load_from_state_dict``.)
    """
    key = prefix + "num_batches_tracked"
    if key not in state_dict and prefix + "running_mean" in state_dict:
        nbt = module.num_batches_tracked
        state_dict[key] = (nbt.detach().clone() if nbt is not None and nbt.device.type != "meta"
                           else torch.tensor(0, dtype=torch.long))


def _bn(num_features: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(num_features)
    bn.register_load_state_dict_pre_hook(_fill_missing_num_batches_tracked)
    return bn


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride`` and zero-pad the new channels evenly.

    No parameters, no buffers (nothing in the state dict).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        if (out_chs - in_chs) % 2 or out_chs < in_chs:
            raise ValueError(f"option-A shortcut needs out_chs - in_chs even and >= 0, got {in_chs}->{out_chs}")
        self.stride = stride
        self.pad = (out_chs - in_chs) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(out_chs)
        self.shortcut = ShortcutA(in_chs, out_chs, stride) if stride != 1 or in_chs != out_chs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2). Intermediates: stem (``act1``), ``layer1``, ``layer2``, ``layer3``."""

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, **kwargs: Any):
        super().__init__()
        pretrained_cfg = kwargs.pop("pretrained_cfg", None)
        cfg_overlay = kwargs.pop("pretrained_cfg_overlay", None)
        global_pool = kwargs.pop("global_pool", "avg")
        self.drop_rate = float(kwargs.pop("drop_rate", 0.0))
        if kwargs:
            raise TypeError(f"CifarResNet got unsupported arguments {sorted(kwargs)} (supported: depth, "
                            "num_classes, in_chans, global_pool='avg', drop_rate, pretrained_cfg, "
                            "pretrained_cfg_overlay)")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
        self._check_pool(global_pool)
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = "avg"
        self.grad_checkpointing = False

        self.conv1 = nn.Conv2d(in_chans, WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = _bn(WIDTHS[0])
        self.act1 = nn.ReLU(inplace=True)  # stateless; a real module so feature_info can name it
        self.feature_info: List[Dict[str, Any]] = [dict(num_chs=WIDTHS[0], reduction=1, module="act1")]
        in_chs, reduction = WIDTHS[0], 1
        for i, width in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_chs, width, stride if j == 0 else 1))
                in_chs = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"layer{i + 1}"))
        self.num_features = self.head_hidden_size = in_chs
        self.linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        cfg = dict(CIFAR_RESNET_CFG if pretrained_cfg is None else pretrained_cfg)
        cfg.setdefault("architecture", f"resnet{depth}_cifar")
        cfg.update(cfg_overlay or {})
        self.pretrained_cfg = cfg
        self.default_cfg = cfg  # timm keeps both names pointing at the same dict
        self._init_weights()

    # ----------------------------------------------------------------------------------------- init
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _check_pool(global_pool: Optional[str]) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"CifarResNet only supports global_pool='avg', got {global_pool!r}")

    # ------------------------------------------------------------------------------------ timm API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^conv1|^bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.linear

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self._check_pool(global_pool)
        self.num_classes = num_classes
        self.linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _stages(self) -> Tuple[nn.Module, ...]:
        return (self.layer1, self.layer2, self.layer3)

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            from timm.models._manipulate import checkpoint_seq
            return checkpoint_seq(stage, x)
        return stage(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features plus intermediates, like timm's ResNet.

        Args:
            x: input images, NCHW.
            indices: take the last n of the 4 feature levels if int, all if None, the listed ones
                (negative from the end) if a sequence; levels are those of ``feature_info``.
            norm: accepted for API compatibility (there is no final norm layer).
            stop_early: stop after the last requested level (the returned final features are then
                that level's output, as in timm).
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of intermediates.
        """
        assert output_fmt in ("NCHW",), "Output shape must be NCHW."
        intermediates: List[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)

        feat_idx = 0
        x = self.act1(self.bn1(self.conv1(x)))
        if feat_idx in take_indices:
            intermediates.append(x)
        stages = self._stages()
        if stop_early:
            stages = stages[:max_index]
        for stage in stages:
            feat_idx += 1
            x = self._run_stage(stage, x)
            if feat_idx in take_indices:
                intermediates.append(x)

        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last requested level (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in ("layer1", "layer2", "layer3")[max_index:]:
            setattr(self, name, nn.Sequential())  # empty Sequential is the identity
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        for stage in self._stages():
            x = self._run_stage(stage, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------- factories
def _create(name: str, depth: int, pretrained: bool, **kwargs: Any) -> CifarResNet:
    if pretrained:
        raise RuntimeError(
            f"{name}: there are no hub weights for the CIFAR ResNets; build it with pretrained=False "
            f"and load a weights file instead (e.g. model id 'file:/path/to/resnet{depth}_cifar10.safetensors"
            f"?arch={name}', or load_state_dict(safetensors.torch.load_file(path)))."
        )
    cfg = dict(kwargs.pop("pretrained_cfg", None) or CIFAR_RESNET_CFG)
    cfg["architecture"] = name
    return CifarResNet(depth, pretrained_cfg=cfg, **kwargs)


def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (n=3, 0.27 M params)."""
    return _create("resnet20_cifar", 20, pretrained, **kwargs)


def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (n=5, 0.46 M params)."""
    return _create("resnet32_cifar", 32, pretrained, **kwargs)


def resnet44_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR (n=7, 0.66 M params)."""
    return _create("resnet44_cifar", 44, pretrained, **kwargs)


def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (n=9, 0.85 M params)."""
    return _create("resnet56_cifar", 56, pretrained, **kwargs)


def resnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR (n=18, 1.7 M params)."""
    return _create("resnet110_cifar", 110, pretrained, **kwargs)
