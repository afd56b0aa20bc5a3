"""A promptable model (SAM 2, SAM 3's tracker, EdgeTAM: backends.sam2.ClickBackend) as the door's
source for ``click``: its candidate masks for the clicks and boxes are the Regions the click task
picks from, as SAM's are (backends.base.ComposedSource.prompt_regions).

It has no Regions of its own (no everything mode) and no text space: its Regions carry empty
embeddings [N, 0], so naming the object needs an embedding source (``--masks sam2:PATH --embed
clip:PATH`` composes one). Interactive use clicks the same image again and again (a UI, the NoC
protocol's click after click), so the last image's encoding is kept and reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from omniseg.backends.sam2 import ClickBackend, ClickEncoding
from omniseg.regions import Regions

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click


def image_key(image: np.ndarray) -> tuple:
    """Identifies an image's pixels (a digest: the array object may be a new copy of the same image)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
    return (tuple(image.shape), str(image.dtype), digest)


class ClickSource:
    """Clicks and boxes -> Regions through a promptable model; see the module docstring."""

    def __init__(self, clicker: ClickBackend) -> None:
        self.clicker = clicker
        self.name = f"{clicker.name} (clicks)"
        self._last: tuple[tuple, ClickEncoding] | None = None

    def encoding(self, image: np.ndarray) -> ClickEncoding:
        key = image_key(image)
        if self._last is None or self._last[0] != key:
            self._last = (key, self.clicker.encode(image))
        return self._last[1]

    @torch.inference_mode()
    def prompt_regions(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions:
        """Every candidate mask the model gives for the clicks (at pixel centres) and boxes, scored by its
        predicted IoU."""
        found = self.clicker.prompt(self.encoding(image), clicks, boxes)
        masks = found.masks.float().cpu()
        return Regions(
            masks=masks,
            embeddings=masks.new_zeros(len(masks), 0),
            scores=found.scores.float().cpu(),
            image_size=(int(image.shape[0]), int(image.shape[1])),
        )
