"""Small CNNs whose head reads a *flattened* feature map, with timm's feature API.

The architectures of four checkpoints in ``shared/models`` (their README gives the facts used here):

=====================  ==========================================================  ==============
arch                   graph                                                       input
=====================  ==========================================================  ==============
``ccexam_mnist_cnn``   2 × [conv3x3 → ReLU → maxpool2] (32, 64); MLP 3136→128→10     grey 28 px
``ccexam_usps_cnn``    2 × [conv3x3 → BN → ReLU → maxpool2] (32, 64); MLP 1024→128→10  grey 16 px
``ccexam_svhn_cnn``    3 × [2 × (conv3x3 → BN → ReLU) → maxpool2] (32, 64, 128);      RGB 32 px
                       MLP 2048→256→10
``keras_cifar10_cnn``  6 × [conv3x3 valid → ReLU → BN(eps 1e-3)] (64, 64, pool, 128,   raw 0-255 RGB
                       128, pool, 64, 64); MLP 64→1024→512→10, ReLU on the logits     32 px
=====================  ==========================================================  ==============

All share one shape, :class:`FlatHeadCNN`: ``features`` (an ``nn.Sequential``; the cut points are
the last module of each block, ``features.<i>``), then flatten, then ``classifier`` (an
``nn.Sequential`` whose last module is the classifier layer; everything before it is the head MLP,
whose output is ``pre_logits``). Because the head reads a flattened map of one size, these models
take only their own input size (``fixed_input_size`` in their cfg).

State-dict keys are those of the checkpoints (``features.0.weight``, ``classifier.2.bias``...). The
Keras CIFAR-10 checkpoint was one flat ``nn.Sequential`` (keys ``0.weight`` ... ``25.bias``);
:func:`checkpoint_filter_fn` (timm's convention, applied by the loader when keys do not fit) maps
its indices onto ``features`` / ``classifier``.

This module imports torch; the plugin module (``small_archs.py``) imports it lazily.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models._features import feature_take_indices

from advisor.plugins.small_archs import CFGS, cfg_for

__all__ = ["FlatHeadCNN", "ccexam_mnist_cnn", "ccexam_usps_cnn", "ccexam_svhn_cnn", "keras_cifar10_cnn", "checkpoint_filter_fn"]


class FlatHeadCNN(nn.Module):
    """``features`` → flatten → ``classifier`` (head MLP, then the classifier layer).

    Args:
        features: the convolutional part.
        cuts: ``(index into features, channels, reduction)`` per cut point, shallow to deep.
        classifier: the head; its last module is the classifier (``nn.Linear``), the rest maps the
            flattened map to ``pre_logits``.
        logit_act: applied to the logits (the Keras CIFAR-10 model ends in a ReLU); dropped by
            :meth:`reset_classifier`, since a new head for a new task is a plain linear layer.
        cfg: timm-style pretrained cfg (preprocessing).
    """

    def __init__(self, features: nn.Sequential, cuts: Sequence[Tuple[int, int, int]], classifier: nn.Sequential,
                 cfg: Dict[str, Any], logit_act: Optional[nn.Module] = None):
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.logit_act = logit_act or nn.Identity()
        self._cut_index = [i for i, _, _ in cuts]
        self.feature_info: List[Dict[str, Any]] = [dict(num_chs=c, reduction=r, module=f"features.{i}") for i, c, r in cuts]
        fc = classifier[-1]
        self.num_classes = fc.out_features
        self.num_features = self.head_hidden_size = fc.in_features
        self.in_chans = cfg["input_size"][0]
        self.pretrained_cfg = self.default_cfg = dict(cfg)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new ``num_classes``-way linear layer after the head MLP (0: none, features only)."""
        self.num_classes = num_classes
        self.classifier[-1] = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.logit_act = nn.Identity()

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
        wanted = {self._cut_index[i]: i for i in take}
        last = self._cut_index[max_index] if stop_early else len(self.features) - 1
        intermediates: List[torch.Tensor] = []
        for i, module in enumerate(self.features):
            if i > last:
                break
            x = module(x)
            if i in wanted:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        self.features = self.features[: self._cut_index[max_index] + 1]
        if prune_head:
            self.classifier = nn.Sequential(nn.Identity())
            self.num_classes = 0
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[:-1](x.flatten(1))
        return x if pre_logits else self.logit_act(self.classifier[-1](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _conv_block(cin: int, cout: int, bn: bool) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1)] + ([nn.BatchNorm2d(cout)] if bn else []) + [nn.ReLU(inplace=True), nn.MaxPool2d(2)]


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise RuntimeError(f"{name}: there are no hub weights; build it with pretrained=False and load a weights file "
                           f"(model id 'file:/path/w.safetensors?arch={name}' or its catalog name with --weights-dir)")


def _kwargs(name: str, kwargs: Dict[str, Any]) -> Tuple[int, int]:
    num_classes = int(kwargs.pop("num_classes", 10))
    in_chans = int(kwargs.pop("in_chans", CFGS[name]["input_size"][0]))
    kwargs.pop("drop_rate", None)
    if kwargs:
        raise TypeError(f"{name} got unsupported arguments {sorted(kwargs)} (supported: num_classes, in_chans)")
    return num_classes, in_chans


def ccexam_mnist_cnn(pretrained: bool = False, **kwargs: Any) -> FlatHeadCNN:
    """MNIST CNN (grey 28 px): cuts ``features.2`` (32 ch, 14 px), ``features.5`` (64 ch, 7 px)."""
    _no_pretrained("ccexam_mnist_cnn", pretrained)
    n, c = _kwargs("ccexam_mnist_cnn", kwargs)
    features = nn.Sequential(*_conv_block(c, 32, False), *_conv_block(32, 64, False))
    head = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True), nn.Linear(128, n))
    return FlatHeadCNN(features, [(2, 32, 2), (5, 64, 4)], head, cfg_for("ccexam_mnist_cnn", c))


def ccexam_usps_cnn(pretrained: bool = False, **kwargs: Any) -> FlatHeadCNN:
    """USPS CNN with BatchNorm (grey 16 px): cuts ``features.3`` (32 ch, 8 px), ``features.7`` (64 ch, 4 px)."""
    _no_pretrained("ccexam_usps_cnn", pretrained)
    n, c = _kwargs("ccexam_usps_cnn", kwargs)
    features = nn.Sequential(*_conv_block(c, 32, True), *_conv_block(32, 64, True))
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(64 * 4 * 4, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, n))
    return FlatHeadCNN(features, [(3, 32, 2), (7, 64, 4)], head, cfg_for("ccexam_usps_cnn", c))


def ccexam_svhn_cnn(pretrained: bool = False, **kwargs: Any) -> FlatHeadCNN:
    """SVHN VGG-style CNN (RGB 32 px): cuts ``features.0/1/2`` (32/64/128 ch, 16/8/4 px)."""
    _no_pretrained("ccexam_svhn_cnn", pretrained)
    n, c = _kwargs("ccexam_svhn_cnn", kwargs)

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))

    features = nn.Sequential(block(c, 32), block(32, 64), block(64, 128))
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, n))
    return FlatHeadCNN(features, [(0, 32, 2), (1, 64, 4), (2, 128, 8)], head, cfg_for("ccexam_svhn_cnn", c))


def keras_cifar10_cnn(pretrained: bool = False, **kwargs: Any) -> FlatHeadCNN:
    """Keras-style CIFAR-10 CNN (raw 0-255 RGB, 32 px; valid 3x3 convs, ReLU before BatchNorm).

    Cuts: ``features.5`` (64 ch, 28 px), ``features.12`` (128 ch, 10 px), ``features.19`` (64 ch, 1 px).
    """
    _no_pretrained("keras_cifar10_cnn", pretrained)
    n, c = _kwargs("keras_cifar10_cnn", kwargs)
    layers: List[nn.Module] = []
    cin = c
    for width in (64, 64, "pool", 128, 128, "pool", 64, 64):
        if width == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(cin, width, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(width, eps=1e-3)]
        cin = width
    head = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Linear(512, n))
    return FlatHeadCNN(nn.Sequential(*layers), [(5, 64, 1), (12, 128, 3), (19, 64, 32)], head, cfg_for("keras_cifar10_cnn", c),
                       logit_act=nn.ReLU())


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: FlatHeadCNN) -> Dict[str, torch.Tensor]:
    """Keys of a checkpoint saved from one flat ``nn.Sequential`` (``<i>.weight``) → this model's.

    The flat order is ``features`` (indices ``0 .. F-1``), one ``Flatten`` (index ``F``), then
    ``classifier`` (``F+1 ...``). Other keys pass through unchanged (the loader then reports any
    that still do not fit)."""
    n_feat = len(model.features)
    out = {}
    for key, value in state_dict.items():
        m = re.match(r"^(\d+)\.(.+)$", key)
        if m is None:
            out[key] = value
            continue
        i = int(m.group(1))
        out[f"features.{i}.{m.group(2)}" if i < n_feat else f"classifier.{i - n_feat - 1}.{m.group(2)}"] = value
    return out
