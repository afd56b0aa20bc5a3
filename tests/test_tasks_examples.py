"""Referring, interactive, in-context and video tasks; few-shot and J&F metrics; their CLI contracts.

Task math runs on hand-made Regions whose answers can be worked out on paper; the CLI tests use
the tiny random model, so they check contracts (files, shapes, ids, exit codes), never quality.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

import omniseg
from conftest import assert_one_line_error, make_scene
from conftest import run_cli as run
from omniseg.errors import InputError
from omniseg.eval.fewshot import FewShotScores, evaluate_incontext, foreground_classes, sample_episodes
from omniseg.eval.video import boundary_f, disk, jaccard, score_sequence, seg2bmap, summarize
from omniseg.regions import Regions
from omniseg.tasks.common import image_regions, sample_at_points
from omniseg.tasks.incontext import ensemble, example_prototypes, segment_with_prototypes
from omniseg.tasks.interactive import Click, box_agreement, interactive_segment, name_region
from omniseg.tasks.refer import refer_regions, spatial_hint
from omniseg.tasks.video import VideoConfig, match_regions, propagate_regions, region_membership
from omniseg.vocab import Vocabulary

E = torch.eye(4)


def make_regions(masks, embeddings=None, features=None, image_size=None) -> Regions:
    """Regions from hand-made [N,h,w] masks; image = 4x the grid (stride 4) unless given."""
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
    n, h, w = masks.shape
    if embeddings is None:
        embeddings = torch.eye(max(n, 4))[:n]
    feats = None if features is None else F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=0)
    return Regions(
        masks, torch.as_tensor(embeddings, dtype=torch.float32), torch.ones(n), image_size or (4 * h, 4 * w), feats
    )


def box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def cell(x, y):
    """Image pixel at the centre of grid cell (x, y) for stride 4: (4x + 1.5, 4y + 1.5)."""
    return 4 * x + 1.5, 4 * y + 1.5


# ------------------------------------------------------------------------------------ Regions / model
def test_regions_rejects_pixel_features_off_the_mask_grid():
    with pytest.raises(ValueError, match="pixel_features"):
        Regions(torch.zeros(2, 4, 4), torch.zeros(2, 3), torch.zeros(2), (16, 16), torch.zeros(5, 4, 3))
    assert Regions(torch.zeros(2, 4, 4), torch.zeros(2, 3), torch.zeros(2), (16, 16)).pixel_features is None


def test_model_returns_unit_pixel_features_on_the_mask_grid(tiny_model_dir):
    from omniseg.models.openseg import OpenSegModel

    model = OpenSegModel.from_pretrained(tiny_model_dir)  # saved weights load: no new parameters
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 64, 48))
    feats = out["pixel_features"]
    assert feats.shape == (1, model.config.feature_dim, *out["mask_logits"].shape[-2:])
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(feats.shape[0], *feats.shape[2:]))
    assert {"mask_logits", "embeddings", "objectness"} <= out.keys()


def test_image_regions_fills_pixel_features(tiny_model_dir, text_encoder):
    seg = omniseg.load(tiny_model_dir)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    array, regions = image_regions(seg, image)
    assert array.shape == (40, 56, 3)
    assert regions.pixel_features is not None
    assert regions.pixel_features.shape[-2:] == regions.masks.shape[-2:]
    assert regions.pixel_features.shape[0] == seg.model.config.feature_dim


def test_sample_at_points_reads_cell_centres():
    maps = torch.arange(12, dtype=torch.float32).view(1, 3, 4)  # image 12x16 at stride 4
    xy = torch.tensor([cell(0, 0), cell(3, 2), cell(1, 1)])
    assert sample_at_points(maps, xy, (12, 16))[0].tolist() == pytest.approx([0.0, 11.0, 5.0], abs=1e-5)


# ------------------------------------------------------------------------------------ refer
def test_refer_picks_the_region_closest_to_the_phrase():
    masks = [box_mask(4, 4, 0, 4, 0, 2), box_mask(4, 4, 0, 4, 2, 4), box_mask(4, 4, 0, 2, 0, 4)]
    result = refer_regions(make_regions(masks), E[1], margin=0.01)
    assert result.selected == [1] and result.ranking[0] == 1
    assert result.mask.shape == (16, 16)
    assert result.mask[:, 8:].all() and not result.mask[:, :8].any()


def test_refer_merges_regions_within_the_margin():
    masks = [box_mask(4, 4, 0, 4, 0, 1), box_mask(4, 4, 0, 4, 3, 4), box_mask(4, 4, 0, 4, 1, 3)]
    phrase = F.normalize(E[0] + 0.95 * E[1] + 0.5 * E[2], dim=0)  # cos: 0.68, 0.65, 0.34
    merged = refer_regions(make_regions(masks), phrase, margin=0.05)
    assert sorted(merged.selected) == [0, 1] and merged.ranking == [0, 1, 2]
    assert merged.mask[:, :4].all() and merged.mask[:, 12:].all() and not merged.mask[:, 4:12].any()
    single = refer_regions(make_regions(masks), phrase, margin=0.01)
    assert single.selected == [0]


def test_refer_spatial_word_keeps_one_side():
    masks = [box_mask(4, 8, 0, 4, 5, 8), box_mask(4, 8, 0, 4, 0, 3)]  # region 0 right, region 1 left
    emb = torch.stack([F.normalize(E[0] + 0.01 * E[2], dim=0), E[0]])
    assert spatial_hint("the dog on the left") == "left" and spatial_hint("a dog") is None
    left = refer_regions(make_regions(masks, emb), E[0], margin=0.05, spatial="left")
    right = refer_regions(make_regions(masks, emb), E[0], margin=0.05, spatial="right")
    assert left.selected == [1] and right.selected == [0]
    assert left.mask[:, :12].all() and not left.mask[:, 12:].any()


def test_refer_skips_empty_regions():
    masks = [np.zeros((4, 4), np.float32), box_mask(4, 4, 1, 3, 1, 3)]
    result = refer_regions(make_regions(masks), E[0])  # region 0 matches best but covers nothing
    assert result.selected == [1] and 0 not in result.ranking


# ------------------------------------------------------------------------------------ interactive
SQUARE = box_mask(8, 8, 2, 4, 2, 4)
LEFT = box_mask(8, 8, 0, 8, 0, 4)
RIGHT = box_mask(8, 8, 0, 8, 4, 8)


def test_click_picks_the_region_under_the_point():
    regions = make_regions([LEFT * (1 - SQUARE), SQUARE, RIGHT])
    assert interactive_segment(regions, [Click(*cell(6, 6))]).region == 2
    result = interactive_segment(regions, [Click(*cell(3, 3))], out_size=(8, 8))
    assert result.region == 1
    np.testing.assert_array_equal(result.mask, SQUARE > 0)
    full = interactive_segment(regions, [Click(*cell(3, 3))])  # default: the image size
    assert full.mask.shape == (32, 32) and full.mask[10, 10] and not full.mask[2, 2]


def test_click_negative_point_steers_away():
    regions = make_regions([LEFT, SQUARE])
    # positive on the left half outside the square, negative on the square: LEFT scores 1 - 1 = 0,
    # SQUARE 0 - 1; LEFT wins. Per pixel, the square belongs with the negative click (affinity 1 =
    # mean of LEFT and SQUARE there) as much as with the positive one (1), so it is carved out.
    clicks = [Click(*cell(0, 6)), Click(*cell(3, 3), positive=False)]
    result = interactive_segment(regions, clicks, out_size=(8, 8))
    assert result.region == 0 and result.method == "clicks"
    np.testing.assert_array_equal(result.mask, LEFT * (1 - SQUARE) > 0)
    uncorrected = interactive_segment(regions, clicks, correct=False, out_size=(8, 8))
    assert uncorrected.mask[3, 3]  # without correction the square stays in


def test_click_second_positive_adds_the_missing_region():
    regions = make_regions([LEFT * (1 - SQUARE), SQUARE, RIGHT])
    result = interactive_segment(regions, [Click(*cell(3, 3)), Click(*cell(0, 6))], out_size=(8, 8))
    assert result.region == 1  # tie 0.5 : 0.5 goes to the smaller region
    np.testing.assert_array_equal(result.mask, LEFT > 0)  # each click brings the pixels of its own region


def test_click_box_agreement_and_clipping():
    masks = torch.tensor(np.stack([SQUARE, LEFT]))
    iou = box_agreement(masks, (8.0, 8.0, 16.0, 16.0), (32, 32))
    assert iou[0] == pytest.approx(1.0) and iou[1] == pytest.approx(4 / 32)
    half_cell = box_agreement(masks, (8.0, 8.0, 10.0, 16.0), (32, 32))  # covers half of the square's cells
    assert half_cell[0] == pytest.approx(1 / 4)  # box mass 1 (2 half cells), overlap 1, square 4
    regions = make_regions([LEFT, SQUARE, RIGHT])
    result = interactive_segment(regions, [], boxes=[(8.0, 8.0, 16.0, 16.0)], out_size=(8, 8))
    assert result.region == 1
    np.testing.assert_array_equal(result.mask, SQUARE > 0)
    # click + a 3x3-cell box in the corner: LEFT scores 1 + 9/32, SQUARE 1 + 1/12; the box makes LEFT the
    # more trusted of the two regions under the click (affinity 1.28 / 2.36 > 0.5 off the square), so the
    # mask is LEFT clipped to the box
    clipped = interactive_segment(regions, [Click(*cell(2, 2))], boxes=[(0.0, 0.0, 12.0, 12.0)], out_size=(8, 8))
    assert clipped.region == 0 and clipped.mask.sum() == 9 and clipped.mask[:3, :3].all()


def test_click_names_the_object_from_the_vocabulary():
    regions = make_regions([LEFT, SQUARE], embeddings=E[[0, 2]])
    vocab = Vocabulary.from_names(["dog", "cat|kitten"])
    vocab.embeddings = E[[0, 1, 2]].numpy()
    vocab.prompt_to_class = np.array([0, 1, 1])
    name, cosine, confidence = name_region(regions, 1, vocab)
    assert (name, cosine) == ("cat", pytest.approx(1.0)) and confidence > 0.99
    assert name_region(regions, 0, vocab)[0] == "dog"
    # "unknown": a known concept (E[0], "dog"-like) the region fits better than any asked name
    only_cat = Vocabulary.from_names(["cat"])
    only_cat.embeddings, only_cat.prompt_to_class = E[[1]].numpy(), np.array([0])
    name, _, confidence = name_region(regions, 0, only_cat, reference=E[[0]], threshold=0.5)
    assert name is None and confidence < 0.5


def test_click_rejects_points_outside_the_image_and_no_positive():
    regions = make_regions([LEFT, SQUARE])
    with pytest.raises(InputError, match="outside"):
        interactive_segment(regions, [Click(40.0, 3.0)])
    with pytest.raises(InputError, match="positive"):
        interactive_segment(regions, [Click(3.0, 3.0, positive=False)])


# ------------------------------------------------------------------------------------ in-context
def feature_image(h, w, background, objects):
    """[D,h,w] features: ``background`` everywhere, then (vector, y0, y1, x0, x1) patches."""
    feats = background.view(-1, 1, 1).repeat(1, h, w)
    for vec, y0, y1, x0, x1 in objects:
        feats[:, y0:y1, x0:x1] = vec.view(-1, 1, 1)
    return F.normalize(feats, dim=0)


def test_example_prototypes_pool_under_each_id():
    feats = feature_image(4, 4, E[0], [(E[1], 0, 2, 0, 2)])
    mask = np.zeros((16, 16), np.uint8)
    mask[:8, :8] = 7
    protos = example_prototypes(feats, mask)
    assert sorted(protos) == [0, 7]
    torch.testing.assert_close(protos[7], E[1])
    torch.testing.assert_close(protos[0], E[0])
    # ignore pixels give no prototype of their own
    mask[8:, 8:] = 255
    assert sorted(example_prototypes(feats, mask, ignore_index=255)) == [0, 7]


def test_incontext_category_finds_every_match_and_keeps_ids():
    ex = feature_image(4, 4, E[0], [(E[1], 0, 2, 0, 2), (E[2], 2, 4, 2, 4)])
    mask = np.zeros((16, 16), np.uint8)
    mask[:8, :8], mask[8:, 8:] = 3, 9
    protos = ensemble([example_prototypes(ex, mask)])
    target = feature_image(4, 6, E[0], [(E[1], 0, 1, 0, 1), (E[1], 3, 4, 5, 6), (E[2], 1, 3, 2, 4)])
    regions = make_regions(np.ones((1, 4, 6)), features=target)
    label = segment_with_prototypes(regions, protos, "category", region_weight=0.0, out_size=(4, 6))
    expected = np.zeros((4, 6), np.uint8)
    expected[0, 0] = expected[3, 5] = 3
    expected[1:3, 2:4] = 9
    np.testing.assert_array_equal(label, expected)
    assert label.dtype == np.uint8
    full = segment_with_prototypes(regions, protos, "category", region_weight=0.0)
    assert full.shape == (16, 24) and full[6, 10] == 9 and full[15, 23] == 3


def test_incontext_instance_keeps_the_best_single_part():
    ex = feature_image(4, 4, E[0], [(E[1], 0, 2, 0, 2)])
    mask = np.zeros((16, 16), np.uint8)
    mask[:8, :8] = 1
    protos = ensemble([example_prototypes(ex, mask)])
    target = feature_image(6, 6, E[0], [(E[1], 0, 1, 0, 1), (E[1], 3, 6, 3, 6)])  # a speck and a big one
    regions = make_regions(np.ones((1, 6, 6)), features=target)
    category = segment_with_prototypes(regions, protos, "category", region_weight=0.0, out_size=(6, 6))
    instance = segment_with_prototypes(regions, protos, "instance", region_weight=0.0, out_size=(6, 6))
    assert ndimage.label(category == 1)[1] == 2
    assert ndimage.label(instance == 1)[1] == 1
    assert instance[3:, 3:].all() and instance.sum() == 9


def test_feature_ensemble_over_examples_beats_one_example():
    # Object features differ per example (e2 + e1, e2 - e1); the target's object is e2 and its
    # background u = (0.5 e0 + e1)/|.|. One example's prototype (e2 + e1)/sqrt2 is closer to u
    # (cos 0.63) than the background prototype e0 (cos 0.45): u is mislabelled. The ensemble of
    # both examples averages to e2 (cos(u, e2) = 0): the mislabelling disappears.
    exs = []
    for sign in (1, -1):
        feats = feature_image(4, 4, E[0], [(F.normalize(E[2] + sign * E[1], dim=0), 0, 2, 0, 2)])
        mask = np.zeros((16, 16), np.uint8)
        mask[:8, :8] = 1
        exs.append(example_prototypes(feats, mask))
    u = F.normalize(0.5 * E[0] + E[1], dim=0)
    target = feature_image(4, 4, u, [(E[2], 1, 3, 1, 3)])
    regions = make_regions(np.ones((1, 4, 4)), features=target)
    truth = box_mask(4, 4, 1, 3, 1, 3) > 0

    def iou(pred):
        return (pred & truth).sum() / (pred | truth).sum()

    one = segment_with_prototypes(regions, ensemble(exs[:1]), region_weight=0.0, out_size=(4, 4)) == 1
    both = segment_with_prototypes(regions, ensemble(exs), region_weight=0.0, out_size=(4, 4)) == 1
    assert iou(one) == pytest.approx(4 / 16)
    assert iou(both) == 1.0


def test_region_weight_snaps_to_region_masks():
    ex = feature_image(4, 4, E[0], [(E[1], 0, 4, 0, 2)])
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 1
    protos = ensemble([example_prototypes(ex, mask)])
    # target: the object (left half) has one noisy background-looking pixel; a region covers the half
    target = feature_image(4, 4, E[0], [(E[1], 0, 4, 0, 2), (E[0], 1, 2, 1, 2)])
    regions = make_regions(np.stack([box_mask(4, 4, 0, 4, 0, 2), box_mask(4, 4, 0, 4, 2, 4)]), features=target)
    pixel_only = segment_with_prototypes(regions, protos, region_weight=0.0, out_size=(4, 4))
    with_regions = segment_with_prototypes(regions, protos, region_weight=0.8, out_size=(4, 4))
    assert pixel_only[1, 1] == 0 and pixel_only[0, 0] == 1  # the noisy pixel, by its own features
    assert (with_regions[:, :2] == 1).all() and (with_regions[:, 2:] == 0).all()


def test_ensemble_needs_an_object_and_a_background():
    feats = feature_image(2, 2, E[0], [])
    with pytest.raises(InputError, match="nothing"):
        ensemble([example_prototypes(feats, np.zeros((8, 8), np.uint8))])
    with pytest.raises(InputError, match="background"):
        ensemble([example_prototypes(feats, np.ones((8, 8), np.uint8))])


# ------------------------------------------------------------------------------------ video
def moving_frames(n=5, w=10):
    """Two identical-looking objects (same features) at the left and right, moving right 1 cell a frame."""
    frames, truths = [], []
    for t in range(n):
        feats = feature_image(4, w, E[0], [(E[1], 1, 3, t, t + 2), (E[1], 1, 3, t + 5, t + 7)])
        truth = np.zeros((4, w), np.uint8)
        truth[1:3, t : t + 2], truth[1:3, t + 5 : t + 7] = 1, 2
        regions = make_regions(
            np.stack([truth == 0, truth == 1, truth == 2]).astype(np.float32), features=feats, image_size=(4, w)
        )
        frames.append(regions)
        truths.append(truth)
    return frames, truths


def test_video_continuity_keeps_identical_objects_apart():
    frames, truths = moving_frames(w=12)
    preds = list(propagate_regions(iter(frames), truths[0], VideoConfig(context=2)))
    assert len(preds) == len(frames)
    for pred, truth in zip(preds, truths, strict=True):
        np.testing.assert_array_equal(pred, truth)
    # appearance alone cannot tell the two apart: one of them gets the other's id
    blind = list(
        propagate_regions(iter(frames), truths[0], VideoConfig(match_weight=0, prior_weight=0, single_part=False))
    )
    assert not all(np.array_equal(p, t) for p, t in zip(blind, truths, strict=True))


def test_match_regions_recovers_a_permutation_and_membership_shares():
    frames, truths = moving_frames()
    prev = frames[0]
    feats = feature_image(4, 10, E[0], [(E[1], 1, 3, 0, 2), (E[2], 1, 3, 5, 7)])
    masks = prev.masks
    a = make_regions(masks, features=feats, image_size=(4, 10))
    b = make_regions(masks[[2, 0, 1]], features=feats, image_size=(4, 10))
    assert match_regions(a, b).tolist() == [2, 0, 1]
    half = np.zeros((4, 10), np.uint8)
    half[:, 5:] = 4
    share = region_membership(a, half, [0, 4])
    torch.testing.assert_close(share[1], torch.tensor([1.0, 0.0]))  # object 1 lies in the left half
    torch.testing.assert_close(share[0], torch.tensor([0.5, 0.5]))  # background splits evenly: 16 + 16 cells


# ------------------------------------------------------------------------------------ J&F metric
def test_jaccard_hand_counts():
    pred = np.zeros((4, 4), bool)
    gt = np.zeros((4, 4), bool)
    pred[0:2, 0:2] = True  # 4 px
    gt[0:2, 1:4] = True  # 6 px, overlap 2
    assert jaccard(pred, gt) == pytest.approx(2 / 8)
    void = np.zeros((4, 4), bool)
    void[:, 3] = True  # drops 2 gt pixels from the union
    assert jaccard(pred, gt, void) == pytest.approx(2 / 6)
    assert jaccard(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_seg2bmap_ring_offset_towards_the_origin():
    seg = np.zeros((6, 6), bool)
    seg[1:4, 1:4] = True
    expected = np.zeros((6, 6), bool)
    expected[0:4, 0:4] = True
    expected[1:3, 1:3] = False  # a 4x4 ring, shifted half a pixel up-left of the 3x3 square
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_disk_matches_definition():
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13  # 1 + 3 + 5 + 3 + 1
    assert d[2].all() and not d[0, 0] and d[0, 2]
    skm = pytest.importorskip("skimage.morphology")
    np.testing.assert_array_equal(disk(5), skm.disk(5).astype(bool))


def test_boundary_f_hand_counted_case():
    # gt 5x5 square, prediction 5 px wider on the right; tolerance ceil(0.008 * diag(20x20)) = 1 px.
    # Hand count: 18 of 30 predicted boundary px lie within 1 px of the truth's, 18 of 20 true ones
    # within 1 px of the prediction's: P = 0.6, R = 0.9, F = 2PR / (P + R) = 0.72.
    gt = np.zeros((20, 20), bool)
    gt[5:10, 5:10] = True
    pred = np.zeros((20, 20), bool)
    pred[5:10, 5:15] = True
    assert boundary_f(pred, gt) == pytest.approx(0.72)
    assert boundary_f(pred, gt, bound_th=1) == pytest.approx(0.72)
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(np.zeros_like(gt), gt) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    # a 1-px shift is within the tolerance: perfect boundary score, imperfect Jaccard
    shifted = np.roll(gt, 1, axis=1)
    assert boundary_f(shifted, gt) == 1.0 and jaccard(shifted, gt) < 1


def test_davis_tolerance_grows_with_the_frame():
    # 854x480 (DAVIS 480p): ceil(0.008 * 979.65) = 8 px, so an 8-px shift of a big square keeps F = 1, 9 px not
    gt = np.zeros((480, 854), bool)
    gt[100:300, 200:500] = True
    assert math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert boundary_f(np.roll(gt, 8, axis=1), gt) == 1.0
    assert boundary_f(np.roll(gt, 9, axis=1), gt) < 1.0


def test_sequence_scores_skip_first_and_last_frames_and_average_objects():
    a = np.zeros((8, 8), np.uint8)
    a[0:4, 0:4] = 1
    a[4:8, 4:8] = 2
    wrong = np.zeros((8, 8), np.uint8)
    gts = [a, a, a, a]
    preds = [wrong, a, wrong, wrong]  # only frames 1 and 2 count: J = 1 and 0 per object
    per_object = score_sequence(preds, gts)
    assert sorted(per_object) == [1, 2]
    assert per_object[1][0] == [1.0, 0.0]
    report = summarize({f"s_{k}": v for k, v in per_object.items()})
    assert report["J_mean"] == 50.0
    assert report["F_mean"] == 50.0  # F of an empty prediction against an object is 0
    assert report["J&F"] == 50.0


# ------------------------------------------------------------------------------------ few-shot metric
def test_fewshot_iou_accumulates_per_class_then_averages():
    scores = FewShotScores(3)
    pred = np.zeros((1, 8), bool)
    gt = np.zeros((1, 8), bool)
    p1, g1 = pred.copy(), gt.copy()
    p1[0, :3], g1[0, 1:4] = True, True  # I 2, U 4
    p2, g2 = pred.copy(), gt.copy()
    p2[0, :3], g2[0, :3] = True, True  # I 3, U 3
    p3, g3 = pred.copy(), gt.copy()
    p3[0, :2], g3[0, 1:2] = True, True  # I 1, U 2
    scores.update(1, p1, g1)
    scores.update(1, p2, g2)
    scores.update(2, p3, g3)
    assert scores.per_class() == {1: pytest.approx(5 / 7), 2: pytest.approx(0.5)}
    assert scores.miou() == pytest.approx((5 / 7 + 0.5) / 2)  # not the per-episode mean (0.5 + 1 + 0.5) / 3
    valid = np.ones((1, 8), bool)
    valid[0, 0] = False
    ignore = FewShotScores(1)
    ignore.update(0, p1, g1, valid)  # pixel 0 (a false positive) is ignored: I 2, U 3
    assert ignore.miou() == pytest.approx(2 / 3)


def test_foreground_classes_binary_and_named_background():
    assert foreground_classes(["cell interior", "membrane"]) == [1]
    assert foreground_classes(["background", "person", "car"]) == [1, 2]
    assert foreground_classes(["sky", "road", "car"]) == [0, 1, 2]


def test_episodes_take_turns_and_never_use_the_query_as_support():
    from omniseg.data.uniform import Sample

    samples = {c: [Sample(f"{c}{i}", None, None) for i in range(5)] for c in (1, 2)}
    episodes, skipped = sample_episodes(samples, samples, episodes=6, shots=3, seed=0)
    assert skipped == []
    assert [ep.class_id for ep in episodes[:2]] in ([1, 2], [2, 1])
    assert sorted(ep.class_id for ep in episodes) == [1, 1, 1, 2, 2, 2]
    for ep in episodes:
        assert len(ep.supports) == 3 and ep.query.id not in {s.id for s in ep.supports}
    again, _ = sample_episodes(samples, samples, episodes=6, shots=3, seed=0)
    assert again == episodes
    few = {1: samples[1][:2], 2: samples[2]}
    _, skipped = sample_episodes(few, few, episodes=2, shots=3, seed=0)
    assert skipped == [1]


class ColourSegmenter:
    """A stand-in Segmenter whose pixel features are the pixels' colours (stride 4): few-shot
    segmentation of the red car in make_scene pictures is then easy, so a wiring mistake in the
    evaluation shows as a low score."""

    model_id = "colour"

    def regions(self, image):
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
        feats = F.avg_pool2d(x[None], 4)[0] - 0.45
        h, w = feats.shape[-2:]
        return Regions(
            torch.ones(1, h, w), torch.ones(1, 3), torch.ones(1), tuple(image.shape[:2]), F.normalize(feats, dim=0)
        )


def test_evaluate_incontext_with_colour_features_is_near_perfect(tmp_path):
    from conftest import write_uniform_dataset

    root = write_uniform_dataset(tmp_path / "scenes", n=10, classes=["sky", "road", "car"])
    report = evaluate_incontext(
        ColourSegmenter(), root, shots=[1, 2], episodes=6, seed=1, split="all", region_weight=0.0, progress=False
    )
    assert set(report["by_shots"]) == {"1", "2"}
    one = report["by_shots"]["1"]
    assert set(one["per_class_iou"]) == {"sky", "road", "car"}
    assert one["episodes"] == 6 and one["classes_evaluated"] == 3
    assert one["mIoU"] > 70
    single = evaluate_incontext(
        ColourSegmenter(), root, shots=1, episodes=6, seed=1, split="all", region_weight=0.0, progress=False
    )
    assert single["mIoU"] == one["mIoU"]  # the same episodes whether or not more K are asked
    with pytest.raises(InputError):
        evaluate_incontext(ColourSegmenter(), root, shots=20, episodes=2, split="all", progress=False)


# ------------------------------------------------------------------------------------ NoC protocol
def test_next_click_goes_to_the_centre_of_the_largest_error():
    from omniseg.eval.interactive import next_click

    gt = np.zeros((20, 20), bool)
    gt[2:9, 2:9] = True  # 7x7, centre (5, 5)
    valid = np.ones_like(gt)
    first = next_click(np.zeros_like(gt), gt, valid)
    assert (first.x, first.y, first.positive) == (5.0, 5.0, True)
    pred = gt.copy()
    pred[11:20, 11:16] = True  # a false alarm 9 tall x 5 wide, touching the bottom border
    pred[2:4, 2:4] = False  # a small miss
    second = next_click(pred, gt, valid)
    assert second.positive is False and second.x == 13.0 and 13 <= second.y <= 17
    assert next_click(gt, gt, valid) is None


def test_noc_counts_clicks_to_the_threshold():
    from omniseg.eval.interactive import noc

    assert noc([0.5, 0.86, 0.95], 0.85, 20) == 2
    assert noc([0.5, 0.86, 0.95], 0.90, 20) == 3
    assert noc([0.5, 0.6], 0.85, 20) == 20


def test_simulated_clicks_reach_a_region_exactly():
    from omniseg.eval.interactive import clicks_to_iou

    regions = make_regions([LEFT * (1 - SQUARE), SQUARE, RIGHT], image_size=(8, 8))
    gt = LEFT > 0  # the object is two regions: the first click finds one, the second the other
    ious = clicks_to_iou(regions, gt, np.ones_like(gt), max_clicks=5)
    assert ious[0] < 1.0 and ious[-1] == 1.0 and len(ious) == 2


# ------------------------------------------------------------------------------------ CLI contracts


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """Three street scenes 64x80 with car (3) and road (1) ids, sky 0; and a 4-frame clip."""
    d = tmp_path_factory.mktemp("examples")
    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        image, mask = make_scene(rng)
        ids = np.where(mask == 2, 3, np.where(mask == 1, 1, 0)).astype(np.uint8)
        Image.fromarray(image).save(d / f"scene{i}.png")
        Image.fromarray(ids).save(d / f"scene{i}_mask.png")
        files.append((d / f"scene{i}.png", d / f"scene{i}_mask.png"))
    clip = d / "clip"
    clip.mkdir()
    image, mask = make_scene(rng)
    for t in range(4):
        Image.fromarray(np.roll(image, 2 * t, axis=1)).save(clip / f"{t:05d}.jpg", quality=95)
    first = np.where(mask == 2, 2, 0).astype(np.uint8)
    first[2:6, 2:6] = 7
    Image.fromarray(first).save(d / "first.png")
    return {"scenes": files, "clip": clip, "first": d / "first.png"}


def read_png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_cli_refer_writes_mask_json_and_overlay(scene_files, tiny_model_dir, tmp_path, capsys):
    image = scene_files["scenes"][0][0]
    code, stdout, _ = run(
        ["refer", image, "the red car on the left", "--out", tmp_path, "--model", tiny_model_dir], capsys
    )
    assert code == 0 and "scene0" in stdout
    mask = read_png(tmp_path / "scene0.png")
    assert mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 255}
    report = json.loads((tmp_path / "scene0.json").read_text())
    assert report["phrase"] == "the red car on the left" and report["spatial"] == "left"
    assert report["selected"] and report["ranking"][0]["region"] in report["selected"]
    assert report["mask"]["area_fraction"] == pytest.approx((mask == 255).mean(), abs=1e-6)
    assert (tmp_path / "scene0_overlay.png").is_file()


def test_cli_click_point_box_and_classes(scene_files, tiny_model_dir, tmp_path, capsys):
    image = scene_files["scenes"][0][0]
    argv = ["click", image, "--point", "40,50", "--point", "5,5,0", "--box", "10,30,70,60", "--out", tmp_path]
    code, _, _ = run([*argv, "--classes", "car,road,sky", "--model", tiny_model_dir, "--quiet"], capsys)
    assert code == 0
    mask = read_png(tmp_path / "scene0.png")
    assert mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 255}
    assert not mask[:30].any() and not mask[:, :10].any()  # clipped to the box
    report = json.loads((tmp_path / "scene0.json").read_text())
    assert report["label"] in {"car", "road", "sky"} and -1 <= report["label_score"] <= 1


@pytest.mark.parametrize(
    "point, message",
    [("40", "X,Y"), ("a,b", "numbers"), ("1,2,5", "1 (positive) or 0"), ("500,5", "outside"), ("5,5,0", "positive")],
)
def test_cli_click_bad_points_exit_2(point, message, scene_files, tiny_model_dir, tmp_path, capsys):
    image = scene_files["scenes"][0][0]
    code, _, err = run(["click", image, "--point", point, "--out", tmp_path, "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, err)
    assert message in err
    assert not any(tmp_path.iterdir())


def test_cli_incontext_writes_target_ids(scene_files, tiny_model_dir, tmp_path, capsys):
    (im0, m0), (im1, m1), (target, _) = scene_files["scenes"]
    argv = ["incontext", "--example", im0, m0, "--example", im1, m1, target, im0, "--out", tmp_path]
    code, _, _ = run([*argv, "--model", tiny_model_dir, "--quiet"], capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene0.png", "scene2.png"]
    for name in ("scene0.png", "scene2.png"):
        label = read_png(tmp_path / name)
        assert label.shape == (64, 80) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 3}
    examples = ["--example", im0, m0, "--example", im1, m1]
    inst = tmp_path / "inst"
    code, _, _ = run(
        ["incontext", *examples, target, "--out", inst, "--level", "instance", "--model", tiny_model_dir], capsys
    )
    assert code == 0
    label = read_png(tmp_path / "inst" / "scene2.png")
    for i in (1, 3):
        assert ndimage.label(label == i, structure=np.ones((3, 3)))[1] <= 1


def test_cli_incontext_bad_inputs_exit_2(scene_files, tiny_model_dir, tmp_path, capsys):
    (im0, m0), (im1, _), _ = scene_files["scenes"]
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(small)
    common = ["--out", tmp_path / "out", "--model", tiny_model_dir]
    cases = [
        ["incontext", "--example", im0, small, im1, *common],  # mask size does not match its image
        ["incontext", "--example", im0, tmp_path / "nope.png", im1, *common],
        ["incontext", "--example", im0, m0, tmp_path / "nope.jpg", *common],
        ["incontext", im1, *common],  # no example
    ]
    for argv in cases:
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err)
    assert not (tmp_path / "out").exists()
    code, _, err = run(["incontext", "--example", im0, small, im1, *common], capsys)
    assert "32" in err and "80x64" in err


def test_cli_video_one_png_per_frame(scene_files, tiny_model_dir, tmp_path, capsys):
    argv = ["video", scene_files["clip"], "--first-mask", scene_files["first"], "--out", tmp_path]
    code, _, _ = run([*argv, "--model", tiny_model_dir, "--quiet", "--context", "2"], capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{t:05d}.png" for t in range(4)]
    first = read_png(scene_files["first"])
    np.testing.assert_array_equal(read_png(tmp_path / "00000.png"), first)
    for t in range(1, 4):
        label = read_png(tmp_path / f"{t:05d}.png")
        assert label.shape == (64, 80) and set(np.unique(label)) <= {0, 2, 7}


def test_cli_video_bad_inputs_exit_2(scene_files, tiny_model_dir, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(rgb)
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["--out", tmp_path / "out", "--model", tiny_model_dir]
    for argv in (
        ["video", scene_files["clip"], "--first-mask", small, *common],
        ["video", scene_files["clip"], "--first-mask", rgb, *common],
        ["video", scene_files["clip"], "--first-mask", tmp_path / "nope.png", *common],
        ["video", tmp_path / "missing", "--first-mask", scene_files["first"], *common],
        ["video", empty, "--first-mask", scene_files["first"], *common],
        ["video", scene_files["clip"], *common],  # no --first-mask
    ):
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ Python API
def test_task_entry_points_on_a_segmenter(scene_files, tiny_model_dir, text_encoder):
    from omniseg.tasks.incontext import incontext
    from omniseg.tasks.interactive import click
    from omniseg.tasks.refer import refer
    from omniseg.tasks.video import video

    seg = omniseg.load(tiny_model_dir)
    (im0, m0), (im1, _), _ = scene_files["scenes"]
    assert refer(seg, im0, "the car").mask.shape == (64, 80)
    result = click(seg, im0, [(40, 50), (5, 5, False)], classes=["car", "road"])
    assert result.mask.dtype == bool and result.label in {"car", "road"}
    labels = incontext(seg, [(im0, m0)], [im1, im0])
    assert len(labels) == 2 and all(label.shape == (64, 80) for label in labels)
    frames = sorted(scene_files["clip"].iterdir())
    first = read_png(scene_files["first"])
    outs = list(video(seg, frames, first))
    assert len(outs) == 4 and np.array_equal(outs[0], first)


def test_segmenter_methods_equal_the_task_functions(scene_files, tiny_model_dir, text_encoder):
    """The Segmenter doors (seg.refer/click/incontext/video) give what the task functions give."""
    from omniseg.tasks.incontext import incontext
    from omniseg.tasks.interactive import click
    from omniseg.tasks.refer import refer
    from omniseg.tasks.video import video

    seg = omniseg.load(tiny_model_dir)
    (im0, m0), (im1, m1), _ = scene_files["scenes"]
    assert seg.regions(im0).pixel_features is not None  # example-based tasks need no second model run
    np.testing.assert_array_equal(seg.refer(im0, "the car").mask, refer(seg, im0, "the car").mask)
    points = [(40, 50), (5, 5, False)]
    np.testing.assert_array_equal(seg.click(im0, points).mask, click(seg, im0, points).mask)
    single = seg.incontext([(im0, m0), (im1, m1)], im1)  # one target, not in a list
    assert len(single) == 1
    np.testing.assert_array_equal(single[0], incontext(seg, [(im0, m0), (im1, m1)], [im1])[0])
    frames = sorted(scene_files["clip"].iterdir())
    first = read_png(scene_files["first"])
    from_path = list(seg.video(frames, scene_files["first"]))
    for a, b in zip(from_path, video(seg, frames, first), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory, scene_files):
    """The uniform video layout: images/<sequence>/<frame>.jpg, masks/<sequence>/<frame>.png."""
    root = tmp_path_factory.mktemp("videodata")
    rng = np.random.default_rng(5)
    for seq in ("carA", "carB"):
        (root / "images" / seq).mkdir(parents=True)
        (root / "masks" / seq).mkdir(parents=True)
        image, mask = make_scene(rng)
        for t in range(4):
            Image.fromarray(np.roll(image, 2 * t, axis=1)).save(root / "images" / seq / f"{t:05d}.jpg", quality=95)
            Image.fromarray(np.roll((mask == 2).astype(np.uint8), 2 * t, axis=1)).save(
                root / "masks" / seq / f"{t:05d}.png"
            )
    (root / "classes.json").write_text(json.dumps(["background", "object"]))
    return root


def test_cli_eval_video_reports_jf_and_the_copy_baseline(video_dataset, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "video.json"
    code, stdout, _ = run(
        ["eval", video_dataset, "--task", "video", "--model", tiny_model_dir, "--quiet", "--json", out], capsys
    )
    assert code == 0 and "copy-first-mask" in stdout
    report = json.loads(out.read_text())
    assert report["sequences"] == 2 and report["frames"] == 8
    assert 0 <= report["J&F"] <= 100
    assert report["gain_over_baseline"] == pytest.approx(
        report["J&F"] - report["baseline_copy_first_mask"]["J&F"], abs=0.011
    )
    code, _, err = run(["eval", video_dataset, "--task", "video", "--split", "val", "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, err)


def test_cli_eval_incontext_several_shots(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "fs.json"
    argv = ["eval", tiny_dataset, "--task", "incontext", "--shots", "2,1", "--episodes", "3", "--split", "all"]
    code, stdout, _ = run([*argv, "--model", tiny_model_dir, "--quiet", "--json", out], capsys)
    assert code == 0 and "shots" in stdout
    report = json.loads(out.read_text())
    assert list(report["mIoU_by_shots"]) == ["1", "2"]
    assert report["by_shots"]["2"]["shots"] == 2 and report["episodes"] == 3
    for bad in (["--shots", "0"], ["--shots", "two"], ["--limit", "2"]):
        code, _, err = run(["eval", tiny_dataset, "--task", "incontext", *bad, "--model", tiny_model_dir], capsys)
        assert_one_line_error(code, err)


def test_cli_eval_interactive_noc(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "noc.json"
    argv = ["eval", tiny_dataset, "--task", "interactive", "--split", "all", "--limit", "2", "--max-clicks", "5"]
    code, stdout, _ = run([*argv, "--model", tiny_model_dir, "--quiet", "--json", out], capsys)
    assert code == 0 and "NoC@85" in stdout
    report = json.loads(out.read_text())
    assert 1 <= report["NoC@85"] <= 5 and report["NoC@85"] <= report["NoC@90"]
    assert report["max_clicks"] == 5 and report["objects"] >= 2


def test_click_pixel_features_split_a_region_that_is_too_big():
    """One region covers both halves; the pixel features tell them apart, so a click on the left
    keeps the left (affinity 0.5 * 1 + 0.5 * 1) and drops the right (0.5 * 1 + 0.5 * 0, not above 0.5)."""
    whole = np.ones((8, 8), np.float32)
    features = torch.zeros(2, 8, 8)
    features[0, :, :4], features[1, :, 4:] = 1.0, 1.0
    regions = make_regions([whole], features=features)
    result = interactive_segment(regions, [Click(*cell(1, 4))], out_size=(8, 8))
    np.testing.assert_array_equal(result.mask, LEFT > 0)
    regions_only = interactive_segment(regions, [Click(*cell(1, 4))], out_size=(8, 8), feature_weight=0.0)
    assert regions_only.mask.all()
