"""The overlay palette (issue 14): distinct, colour-blind-safe colours first, no repeats below 60
classes, and large vocabularies coloured by the classes present."""

from __future__ import annotations

import numpy as np

from omniseg.viz import SAFE_COLOURS, _lab, class_colours, overlay, palette


def test_palette_is_distinct_and_prefix_stable():
    colours = palette(60)
    assert len({tuple(c) for c in colours}) == 60
    lab = _lab(colours)
    distances = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(60) * 1e9
    assert distances.min() > 10  # CIELAB delta E: every pair tells apart at a glance
    assert np.array_equal(palette(5), colours[:5])
    assert [tuple(c) for c in palette(len(SAFE_COLOURS))] == list(SAFE_COLOURS)


def test_large_vocabularies_colour_the_classes_present_by_area():
    label = np.full((20, 20), 65535, np.uint16)
    label[:10] = 40_000  # the largest class present
    label[10:15] = 7
    label[15:, :5] = 99_999 % 65535
    colours = class_colours(label, 100_000, 65535)
    first = palette(3)
    assert tuple(colours[40_000]) == tuple(first[0]) and tuple(colours[7]) == tuple(first[1])
    assert tuple(colours[99_999 % 65535]) == tuple(first[2])
    small = class_colours(np.zeros((2, 2), np.uint8), 10, 255)
    assert np.array_equal(small, palette(10))  # up to 64 classes: one colour per class, in every picture
    picture = overlay(np.zeros((20, 20, 3), np.uint8), label, [f"c{i}" for i in range(100_000)], 65535)
    assert picture.width > 20  # with a legend of the classes present
