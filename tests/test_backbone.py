"""The pretrained EfficientNet-Lite0 is wired right: it classifies real photos, and its feature
pyramid has the documented strides and channels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from omniseg.models.backbone import FEATURE_CHANNELS, IMAGE_MEAN, IMAGE_STD, load_pretrained_backbone

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def backbone():
    return load_pretrained_backbone().eval()


def _preprocess(image: np.ndarray, size: int = 224) -> torch.Tensor:
    x = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    x = (x - np.asarray(IMAGE_MEAN, np.float32)) / np.asarray(IMAGE_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.parametrize(
    ("photo", "allowed"),
    [
        ("chelsea", {281, 282, 283, 284, 285}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
        ("coffee", {967, 968}),  # espresso, cup
    ],
)
def test_imagenet_classification_of_real_photos(backbone, photo, allowed):
    with torch.inference_mode():
        logits = backbone.classify(_preprocess(getattr(skimage_data, photo)()))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in allowed


def _ceil_sizes(h: int, w: int) -> list[tuple[int, int]]:
    # TF "same" padding: every stride-2 stage maps n -> ceil(n / 2), so stride s gives ceil(n / s).
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


@pytest.mark.parametrize(("h", "w"), [(128, 96), (96, 128), (100, 75)])
def test_feature_strides_and_channels(backbone, h, w):
    with torch.inference_mode():
        feats = backbone.forward_features(torch.zeros(1, 3, h, w))
    assert len(feats) == 4
    assert [f.shape[1] for f in feats] == list(FEATURE_CHANNELS)
    assert [tuple(f.shape[-2:]) for f in feats] == _ceil_sizes(h, w)


def test_odd_size_expected_values():
    # Spelled out for 100x75: 100/4=25, 75/4=18.75->19; /8: 12.5->13, 9.4->10; /16: 6.25->7, 4.7->5; /32: 4, 3
    assert _ceil_sizes(100, 75) == [(25, 19), (13, 10), (7, 5), (4, 3)]
