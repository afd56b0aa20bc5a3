"""The frozen recognizer: ImageNet-1k probabilities per region from never-trained backbone weights.

OMG-Seg (and F-VLM, FC-CLIP) keep a frozen recognizer beside the trained classifier and fuse the
two scores, because fine-tuning on a few hundred images makes the trained head forget what the
pretrained weights knew about everything else. omniseg's frozen recognizer is the ImageNet head of
the EfficientNet-Lite0 package the backbone comes from: the trained model fine-tunes backbone
blocks >= ``trainable_backbone_from`` (11), so the recognizer re-runs the *pretrained* copies of
those blocks on the shared output of block 10, then the 1x1 head conv, and mask-pools the
1280-d head features inside each region before the ImageNet classifier (pooling before a linear
layer equals averaging per-pixel logits). The extra cost is blocks 11-15 and the head at strides 16
and 32: a few percent of the model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from omniseg.models.backbone import EfficientNetLite0

MASK_TO_FEATURE_STRIDE = 8  # masks at stride 4 of the image, head features at stride 32


class FrozenImageNetHead(nn.Module):
    """Pretrained blocks ``first..`` + head conv + classifier, frozen (never trained, BN in eval)."""

    def __init__(self, backbone: EfficientNetLite0, first: int) -> None:
        super().__init__()
        self.first = first
        self.blocks = nn.ModuleList(copy.deepcopy(b) for b in backbone._blocks[first:])
        self.conv_head = copy.deepcopy(backbone._conv_head)
        self.bn = copy.deepcopy(backbone._bn1)
        self.fc = copy.deepcopy(backbone._fc)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenImageNetHead:
        return super().train(False)  # frozen: BatchNorm statistics never move

    def head_features(self, h: torch.Tensor) -> torch.Tensor:
        """Output of backbone block ``first - 1`` [B,C,h,w] -> head features [B,1280,h',w'] (stride 32)."""
        for block in self.blocks:
            h = block(h)
        return F.relu6(self.bn(self.conv_head(h)))

    def region_logits(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mask pooling: head features [B,1280,h,w] (stride 32) and soft masks [B,N,H,W] on the model's
        stride-4 grid -> ImageNet logits [B,N,1000].

        Masks are area-averaged onto the feature grid (8x8 mask cells per feature cell; the last row
        and column may be partial, as the backbone's "same" padding makes them), then each region's
        features are its mask-weighted mean. A fixed pooling window, not an adaptive one, so the ONNX
        export keeps height and width dynamic.
        """
        weights = F.avg_pool2d(masks, MASK_TO_FEATURE_STRIDE, MASK_TO_FEATURE_STRIDE, ceil_mode=True)  # [B,N,h,w]
        mass = weights.sum((2, 3)).clamp(min=1e-6).unsqueeze(-1)
        pooled = torch.einsum("bnhw,bchw->bnc", weights, features) / mass
        return self.fc(pooled)

    def pixel_logits(self, features: torch.Tensor) -> torch.Tensor:
        """ImageNet logits at every cell of the head features: [B,1280,h,w] -> [B,1000,h,w] (a class
        activation map; the classifier is linear, so its mean over a mask is the region's logits)."""
        return torch.einsum("kc,bchw->bkhw", self.fc.weight, features) + self.fc.bias.view(1, -1, 1, 1)

    def image_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The whole image's ImageNet logits [B,1000] (global average pool, as the classifier was trained)."""
        return self.fc(features.mean(dim=(2, 3)))
