"""Property tests (hypothesis) of the metrics, the task functions and vocabulary parsing, and a
hypothesis-driven fuzz of the image / mask / vocabulary loaders with a fixed budget per run.

Budget: OMNISEG_FUZZ_EXAMPLES inputs per fuzz target (default FUZZ_DEFAULT); the counts of every
run are printed at the end of pytest's output ("fuzz iterations") and checked here, so a CI log
says how much was fuzzed. A fuzzed loader must return a well-formed array / Vocabulary or raise
InputError: any other exception is a finding (RELIABILITY.md lists the ones fixed).
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import FUZZ_COUNTS
from omniseg.errors import InputError
from omniseg.eval.metrics import ConfusionMatrix
from omniseg.eval.panoptic import PanopticQuality, Segment
from omniseg.images import load_image
from omniseg.regions import Regions
from omniseg.tasks.common import id_fractions, load_mask
from omniseg.tasks.panoptic import panoptic_segmentation
from omniseg.tasks.semantic import class_max_over_prompts, semantic_segmentation
from omniseg.vocab import Vocabulary

FUZZ_DEFAULT = 200
FUZZ_EXAMPLES = int(os.environ.get("OMNISEG_FUZZ_EXAMPLES", FUZZ_DEFAULT))
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------------------------- strategies
label_maps = st.integers(1, 6).flatmap(
    lambda k: st.tuples(
        st.just(k),
        hnp.arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, k - 1)),
    )
)


@st.composite
def prediction_pairs(draw):
    """(K, ground truth with some 255 = ignore, prediction with some -1 = unlabeled)."""
    k, gt = draw(label_maps)
    pred = draw(hnp.arrays(np.int64, gt.shape, elements=st.integers(-1, k - 1)))
    ignore = draw(hnp.arrays(np.bool_, gt.shape))
    return k, np.where(ignore, 255, gt), pred


def permute(labels: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Relabel class ids 0..K-1 by perm; other values (255, -1) stay."""
    out = labels.copy()
    inside = (labels >= 0) & (labels < len(perm))
    out[inside] = perm[labels[inside]]
    return out


# ------------------------------------------------------------------------------------------ mIoU
@PROPERTY
@given(label_maps)
def test_miou_perfect_prediction_is_100(case):
    k, gt = case
    cm = ConfusionMatrix(k)
    cm.update(gt, gt)
    scores = cm.scores()
    assert scores["mIoU"] == pytest.approx(100.0) and scores["pixel_acc"] == pytest.approx(100.0)


@PROPERTY
@given(prediction_pairs(), st.randoms(use_true_random=False))
def test_miou_invariant_to_class_permutation(case, rnd):
    k, gt, pred = case
    perm = np.array(rnd.sample(range(k), k))
    a, b = ConfusionMatrix(k), ConfusionMatrix(k)
    a.update(pred, gt)
    b.update(permute(pred, perm), permute(gt, perm))
    sa, sb = a.scores(), b.scores()
    for key in ("mIoU", "mAcc", "pixel_acc"):
        assert (math.isnan(sa[key]) and math.isnan(sb[key])) or sa[key] == pytest.approx(sb[key])
    np.testing.assert_allclose(sa["iou"], sb["iou"][perm])  # class c's IoU is class perm[c]'s now


@PROPERTY
@given(prediction_pairs())
def test_miou_bounded_and_additive_over_images(case):
    k, gt, pred = case
    whole, parts = ConfusionMatrix(k), ConfusionMatrix(k)
    whole.update(pred, gt)
    half = gt.shape[0] // 2
    parts.update(pred[:half], gt[:half])
    parts.update(pred[half:], gt[half:])
    assert np.array_equal(whole.matrix, parts.matrix)
    miou = whole.scores()["mIoU"]
    assert math.isnan(miou) or 0.0 <= miou <= 100.0


def test_miou_empty_cases():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64))
    cm.update(np.zeros((2, 2), np.int64), np.full((2, 2), 255))
    scores = cm.scores()
    assert math.isnan(scores["mIoU"]) and math.isnan(scores["pixel_acc"])


# -------------------------------------------------------------------------------------------- PQ
@st.composite
def panoptic_maps(draw, shape: tuple[int, int] | None = None):
    """An id map (0 = void) with segments of categories 1..4."""
    h, w = shape or (draw(st.integers(2, 10)), draw(st.integers(2, 10)))
    n = draw(st.integers(0, 5))
    id_map = draw(hnp.arrays(np.int64, (h, w), elements=st.integers(0, n)))
    present = sorted(int(i) for i in np.unique(id_map) if i != 0)
    cats = draw(st.lists(st.integers(1, 4), min_size=len(present), max_size=len(present)))
    return id_map, [Segment(i, c) for i, c in zip(present, cats, strict=True)]


@PROPERTY
@given(panoptic_maps())
def test_pq_perfect_prediction_is_100(case):
    id_map, segments = case
    pq = PanopticQuality()
    pq.update(id_map, segments, id_map, segments)
    summary = pq.average({c: True for c in range(1, 5)})
    if not segments:
        assert summary["n"] == 0 and math.isnan(summary["pq"])  # the empty case: nothing to score
    else:
        assert summary["pq"] == pytest.approx(1.0) and summary["sq"] == pytest.approx(1.0)


same_size_maps = st.tuples(st.integers(2, 10), st.integers(2, 10)).flatmap(
    lambda shape: st.tuples(panoptic_maps(shape), panoptic_maps(shape))
)


@PROPERTY
@given(same_size_maps, st.randoms(use_true_random=False))
def test_pq_invariant_to_category_and_segment_id_permutation(maps, rnd):
    (gt_map, gt_segs), (pred_map, pred_segs) = maps
    cat_perm = dict(zip(range(1, 5), rnd.sample(range(1, 5), 4), strict=True))
    ids = sorted({s.id for s in pred_segs})
    id_perm = dict(zip(ids, [i + 100 for i in rnd.sample(ids, len(ids))], strict=True))
    a, b = PanopticQuality(), PanopticQuality()
    a.update(gt_map, gt_segs, pred_map, pred_segs)
    relabelled = np.vectorize(lambda v: id_perm.get(int(v), 0))(pred_map) if ids else pred_map
    b.update(
        gt_map,
        [Segment(s.id, cat_perm[s.category_id]) for s in gt_segs],
        relabelled,
        [Segment(id_perm[s.id], cat_perm[s.category_id]) for s in pred_segs],
    )
    sa, sb = a.average({c: True for c in range(1, 5)}), b.average({c: True for c in range(1, 5)})
    assert sa["n"] == sb["n"]
    if sa["n"]:
        assert sa["pq"] == pytest.approx(sb["pq"]) and 0.0 <= sa["pq"] <= 1.0


# --------------------------------------------------------------------------------------- mask AP
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(panoptic_maps(), st.permutations([1, 2, 3, 4]))
def test_mask_ap_perfect_is_100_and_invariant_to_category_ids(case, perm):
    from omniseg import formats
    from omniseg.data.segments import GTSegment, bbox_of
    from omniseg.eval.instance import coco_ground_truth, mask_ap

    id_map, segments = case
    assume(segments)

    def run(cat_of) -> dict:
        gts = [
            GTSegment(s.id, cat_of(s.category_id), False, int((id_map == s.id).sum()), bbox_of(id_map == s.id))
            for s in segments
        ]
        truth = coco_ground_truth([(1, id_map, gts)], {cat_of(c): f"c{c}" for c in range(1, 5)})
        results = [
            {
                "image_id": 1,
                "category_id": g.category_id,
                "segmentation": formats.encode_rle(id_map == g.id),
                "score": 1.0,
            }
            for g in gts
        ]
        return mask_ap(truth, results)

    plain, permuted = run(lambda c: c), run(lambda c: perm[c - 1])
    assert plain["AP"] == pytest.approx(1.0) and plain["AP50"] == pytest.approx(1.0)
    assert permuted == pytest.approx(plain)


# ---------------------------------------------------------------------------------- task functions
@st.composite
def regions_and_prompts(draw):
    n, d, k = draw(st.integers(1, 6)), draw(st.integers(2, 8)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    regions = Regions(
        masks=torch.rand(n, h, w, generator=g),
        embeddings=torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1),
        scores=torch.rand(n, generator=g),
        image_size=(h * 4, w * 4),
    )
    owner = torch.tensor(draw(st.lists(st.integers(0, k - 1), min_size=k, max_size=3 * k)))
    owner[:k] = torch.arange(k)  # every class has a prompt
    prompts = torch.nn.functional.normalize(torch.randn(len(owner), d, generator=g), dim=1)
    return regions, prompts, owner, k


@PROPERTY
@given(regions_and_prompts())
def test_class_max_over_prompts_is_the_max_of_each_class(case):
    _, prompts, owner, k = case
    sim = prompts @ prompts.T
    out = class_max_over_prompts(sim, owner, k)
    for c in range(k):
        assert torch.allclose(out[c], sim[owner == c].max(0).values)


@PROPERTY
@given(regions_and_prompts(), st.randoms(use_true_random=False))
def test_semantic_labels_follow_a_permutation_of_the_classes(case, rnd):
    regions, prompts, owner, k = case
    label, score = semantic_segmentation(regions, prompts, owner, k)
    assert label.shape == regions.image_size and int(label.min()) >= 0 and int(label.max()) < k
    assert float(score.abs().max()) <= 1.0 + 1e-5
    perm = torch.tensor(rnd.sample(range(k), k))
    relabelled, _ = semantic_segmentation(regions, prompts, perm[owner], k)
    assert torch.equal(relabelled, perm[label]) or _ties(regions, prompts, owner, k)
    assert bool((semantic_segmentation(regions, prompts, owner, k, threshold=1.01)[0] == -1).all())
    assert bool((semantic_segmentation(regions, prompts, owner, k, threshold=-1.01)[0] >= 0).all())


def _ties(regions, prompts, owner, k) -> bool:
    """argmax is free to break exact ties either way."""
    from omniseg.tasks.semantic import region_class_similarity, semantic_logits

    logits = semantic_logits(regions.masks, region_class_similarity(regions, prompts, owner, k))
    top2 = logits.topk(min(2, k), dim=0).values
    return k > 1 and bool(((top2[0] - top2[-1]).abs() < 1e-6).any())


@PROPERTY
@given(regions_and_prompts(), st.lists(st.booleans(), min_size=5, max_size=5))
def test_panoptic_segments_are_disjoint_and_match_the_id_map(case, stuff_flags):
    regions, prompts, owner, k = case
    pan = panoptic_segmentation(regions, prompts, owner, k, stuff_flags[:k], min_score=0.0, min_area=1)
    ids = set(torch.unique(pan.id_map).tolist()) - {0}
    assert ids == {s.id for s in pan.segments}
    for s in pan.segments:
        assert int((pan.id_map == s.id).sum()) == s.area > 0 and 0 <= s.label < k
    stuff_labels = [s.label for s in pan.segments if not s.isthing]
    assert len(stuff_labels) == len(set(stuff_labels)), "one segment per stuff class"


@PROPERTY
@given(
    hnp.arrays(np.int64, st.tuples(st.integers(1, 16), st.integers(1, 16)), elements=st.integers(0, 3)),
    st.tuples(st.integers(1, 5), st.integers(1, 5)),
)
def test_id_fractions_partition_each_cell(mask, grid):
    ids = sorted(int(i) for i in np.unique(mask) if i != 3)
    frac, valid = id_fractions(mask, ids, grid, ignore_index=3)
    assert frac.shape == (len(ids), *grid) and bool((frac >= -1e-6).all())
    assert torch.allclose(frac.sum(0), valid, atol=1e-5)


# ------------------------------------------------------------------------------------ vocabularies
plain_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"), blacklist_characters=",|[]#\ufeff"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip())


@PROPERTY
@given(st.lists(plain_names, min_size=1, max_size=12, unique_by=lambda s: s.strip().casefold()))
def test_vocabulary_names_round_trip_through_string_list_and_file(tmp_path_factory, names):
    expected = [n.strip() for n in names]
    assert Vocabulary.from_names(names).classes == expected
    assert Vocabulary.from_string(",".join(names)).classes == expected
    path = tmp_path_factory.mktemp("vocab") / "v.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    assert Vocabulary.from_file(path).classes == expected


@PROPERTY
@given(st.text(max_size=200))
def test_vocabulary_from_any_string_is_valid_or_refused(text):
    try:
        vocab = Vocabulary.from_string(text)
    except InputError:
        return
    firsts = [c.casefold() for c in vocab.classes]
    assert len(firsts) == len(set(firsts)) and all(n and n == n.strip() for s in vocab.synonyms for n in s)
    assert len(vocab) <= text.count(",") + 1


# ------------------------------------------------------------------------------------------ fuzzing
def _encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (12, 9), frames: int = 1) -> bytes:
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
        for _ in range(frames)
    ]
    buf = io.BytesIO()
    pictures[0].save(buf, format=fmt, save_all=frames > 1, append_images=pictures[1:])
    return buf.getvalue()


SEEDS = {
    "png": _encoded("PNG"),
    "png-palette": _encoded("PNG", "P"),
    "png-gray": _encoded("PNG", "L"),
    "jpeg": _encoded("JPEG"),
    "gif": _encoded("GIF", "P", frames=2),
    "tiff": _encoded("TIFF", frames=2),
    "bmp": _encoded("BMP"),
    "webp": _encoded("WEBP"),
}


@st.composite
def mutated_files(draw, seeds: dict[str, bytes] = SEEDS):
    """A valid image file with bytes flipped, inserted, removed or cut off (or random bytes)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "header"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        else:  # a big value where sizes live (header bytes)
            at = draw(st.integers(0, min(40, len(data))))
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
    return bytes(data)


def _fuzz_file(tmp_path_factory, name: str, data: bytes):
    FUZZ_COUNTS[name] = FUZZ_COUNTS.get(name, 0) + 1
    path = tmp_path_factory.getbasetemp() / f"fuzz-{name}.bin"
    path.write_bytes(data)
    return path


@FUZZ
@given(mutated_files())
def test_fuzz_load_image(tmp_path_factory, data):
    path = _fuzz_file(tmp_path_factory, "load_image(file)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MultiFrameWarning for the GIF/TIFF seeds
        try:
            array = load_image(path)
        except InputError:
            return
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and array.size > 0


@FUZZ
@given(mutated_files(SEEDS | {"mask": _encoded("PNG", "L", (16, 16)), "mask-1bit": _encoded("PNG", "1")}))
def test_fuzz_load_mask(tmp_path_factory, data):
    path = _fuzz_file(tmp_path_factory, "load_mask(file)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mask = load_mask(path)
        except InputError:
            return
    assert mask.ndim == 2 and np.issubdtype(mask.dtype, np.integer) and mask.size > 0


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_fuzz_vocabulary_file(tmp_path_factory, data):
    path = _fuzz_file(tmp_path_factory, "Vocabulary.from_file", data)
    try:
        vocab = Vocabulary.from_file(path)
    except InputError:
        return
    assert len(vocab) >= 1 and all(vocab.classes)


image_arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
)


@FUZZ
@given(image_arrays)
def test_fuzz_load_image_array(array):
    FUZZ_COUNTS["load_image(array)"] = FUZZ_COUNTS.get("load_image(array)", 0) + 1
    try:
        out = load_image(array)
    except InputError:
        return
    assert out.dtype == np.uint8 and out.shape == (*array.shape[:2], 3)


def test_fuzz_budget_was_spent():
    """Runs after the fuzz tests (file order): each target saw its full budget this run."""
    targets = ["load_image(file)", "load_mask(file)", "Vocabulary.from_file", "load_image(array)"]
    ran = {t: FUZZ_COUNTS.get(t, 0) for t in targets}
    if not any(ran.values()):
        pytest.skip("the fuzz tests were not selected in this run")
    assert all(n >= FUZZ_EXAMPLES for n in ran.values()), ran
