"""mini-Xception (Arriaga, Valdenegro-Toro & Plöger 2017) with timm's feature API.

The architecture of ``shared/models/mini_xception_fer2013.safetensors`` (FER2013 facial
expressions, 7 classes, grey 64 px, 58 k parameters), built from the facts in that folder's README:

- ``stem``: 2 × [conv3x3 valid, no bias → BN → ReLU], 8 channels (64 px → 60 px);
- ``blocks.0 .. blocks.3``: residual modules with C = 16, 32, 64, 128. Shortcut: conv1x1 stride 2
  (no bias) → BN. Main: separable conv3x3 'same' → BN → ReLU → separable conv3x3 'same' → BN →
  maxpool 3x3 stride 2 'same'. Output: main + shortcut (60 → 30 → 15 → 8 → 4 px);
- head: conv3x3 'same' → 7 (with bias), global average pool (softmax in the source).

Keras' BatchNorm uses eps 1e-3; its separable conv is a depthwise conv (depth multiplier 1) then a
pointwise one, both without bias. TensorFlow's 'same' padding pads ``max((ceil(n/s) - 1)·s + k - n, 0)``
in total, ``total // 2`` before and the rest after; for the stride-2 max pool that is asymmetric,
with −inf padding (:class:`MaxPoolSame`). For the stride-1 3x3 convs it is 1 on each side, and for
the stride-2 1x1 shortcut 0, so those are plain ``nn.Conv2d`` paddings.

Cut points: ``stem`` and ``blocks.0-3``; ``pre_logits`` is the global average of ``blocks.3``
(128-d). The source's head is a 3x3 convolution on the *unpooled* map, so its logits are not a
linear function of ``pre_logits``: ``forward_head`` computes them from the map; after
:meth:`MiniXception.reset_classifier` the new head is a linear layer on ``pre_logits``.

Checkpoint keys are Keras layer names (``conv2d_3.kernel``, ``batch_normalization_3.gamma``,
``separable_conv2d_1.depthwise_kernel``...), with tensors already in torch layout;
:func:`checkpoint_filter_fn` maps them onto this module's names (Keras numbers layers in creation
order: in each residual module the shortcut's conv and BN come before the main path's layers).

This module imports torch; the plugin module (``small_archs.py``) imports it lazily.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models._features import feature_take_indices

from advisor.plugins.small_archs import CFGS, cfg_for

__all__ = ["MiniXception", "mini_xception", "checkpoint_filter_fn"]

WIDTHS = (16, 32, 64, 128)
BN_EPS = 1e-3


class MaxPoolSame(nn.Module):
    """Max pool with TensorFlow's 'same' padding (−inf, ``total // 2`` before, the rest after)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel_size, self.stride)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3 'same', depth multiplier 1, no bias): depthwise then pointwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class ResidualModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS))
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pool = MaxPoolSame(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return y + self.shortcut(x)


class MiniXception(nn.Module):
    """mini-Xception; intermediates ``stem``, ``blocks.0`` … ``blocks.3`` (see the module docstring)."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, pretrained_cfg: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS), nn.ReLU(inplace=True),
        )
        blocks, cin = [], 8
        self.feature_info: List[Dict[str, Any]] = [dict(num_chs=8, reduction=1, module="stem")]
        for i, width in enumerate(WIDTHS):
            blocks.append(ResidualModule(cin, width))
            self.feature_info.append(dict(num_chs=width, reduction=2 ** (i + 1), module=f"blocks.{i}"))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.num_features = self.head_hidden_size = cin
        self.in_chans = in_chans
        self.num_classes = num_classes
        # the source's head: a 3x3 conv on the map, then global average pooling
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1) if num_classes > 0 else nn.Identity()
        self._conv_head = num_classes > 0
        self.pretrained_cfg = self.default_cfg = dict(pretrained_cfg or CFGS["mini_xception"])

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new ``num_classes``-way *linear* head on ``pre_logits`` (0: none)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._conv_head = False

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Final features plus the maps at the cut points, like timm's CNNs (``indices`` as there)."""
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates: List[torch.Tensor] = []
        x = self.stem(x)
        if 0 in take:
            intermediates.append(x)
        blocks = self.blocks[:max_index] if stop_early else self.blocks
        for i, block in enumerate(blocks, start=1):
            x = block(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        self.blocks = self.blocks[:max_index]
        if prune_head:
            self.reset_classifier(0)
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or not self._conv_head:
            x = x.mean(dim=(2, 3))
            return x if pre_logits else self.head(x)
        return self.head(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def mini_xception(pretrained: bool = False, **kwargs: Any) -> MiniXception:
    """mini-Xception for grey 64 px faces (7 FER2013 expressions by default)."""
    if pretrained:
        raise RuntimeError("mini_xception: there are no hub weights; load a weights file "
                           "(model id 'file:/path/w.safetensors?arch=mini_xception' or mini_xception_fer2013 with --weights-dir)")
    num_classes = int(kwargs.pop("num_classes", 7))
    in_chans = int(kwargs.pop("in_chans", 1))
    kwargs.pop("drop_rate", None)
    if kwargs:
        raise TypeError(f"mini_xception got unsupported arguments {sorted(kwargs)} (supported: num_classes, in_chans)")
    return MiniXception(num_classes, in_chans, cfg_for("mini_xception", in_chans))


_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _keras_names() -> Dict[str, str]:
    """Keras layer name → this module's name, in Keras' creation order."""
    names = {"conv2d_1": "stem.0", "batch_normalization_1": "stem.1", "conv2d_2": "stem.3", "batch_normalization_2": "stem.4",
             "conv2d_7": "head"}
    for i in range(len(WIDTHS)):
        b = f"blocks.{i}"
        names[f"conv2d_{3 + i}"] = f"{b}.shortcut.0"
        names[f"batch_normalization_{3 + 3 * i}"] = f"{b}.shortcut.1"
        names[f"separable_conv2d_{1 + 2 * i}"] = f"{b}.sep1"
        names[f"batch_normalization_{4 + 3 * i}"] = f"{b}.bn1"
        names[f"separable_conv2d_{2 + 2 * i}"] = f"{b}.sep2"
        names[f"batch_normalization_{5 + 3 * i}"] = f"{b}.bn2"
    return names


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: MiniXception) -> Dict[str, torch.Tensor]:
    """Keras layer/weight names → this module's state-dict keys (tensors are already in torch layout).

    ``kernel`` → ``weight``, ``bias`` → ``bias``; separable convs' ``depthwise_kernel`` /
    ``pointwise_kernel`` → ``dw.weight`` / ``pw.weight``; BatchNorm's ``gamma``, ``beta``,
    ``moving_mean``, ``moving_variance`` → ``weight``, ``bias``, ``running_mean``, ``running_var``.
    Unknown keys pass through (the loader reports them)."""
    names = _keras_names()
    out = {}
    for key, value in state_dict.items():
        layer, _, param = key.partition(".")
        if layer not in names:
            out[key] = value
            continue
        new = {"kernel": "weight", "bias": "bias", "depthwise_kernel": "dw.weight", "pointwise_kernel": "pw.weight"}.get(param) \
            or _BN.get(param, param)
        out[f"{names[layer]}.{new}"] = value
    return out
