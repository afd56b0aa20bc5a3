"""Instance and panoptic segmentation: thing/stuff vocabulary, task math on hand-made Regions, COCO
writers, API/CLI contract, and the metrics against reference implementations (hotcoco's
panopticapi-parity PQ, pycocotools' COCOeval)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import omniseg
from conftest import assert_one_line_error
from conftest import run_cli as run
from omniseg import formats
from omniseg.data.segments import ClassRoles, ground_truth_segments
from omniseg.errors import InputError
from omniseg.eval.instance import coco_ground_truth, evaluate_instances, mask_ap
from omniseg.eval.panoptic import PanopticQuality, Segment, evaluate_panoptic
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.tasks.instance import classify_regions, instance_segmentation, mask_bbox
from omniseg.tasks.panoptic import panoptic_segmentation
from omniseg.vocab import Vocabulary


# ------------------------------------------------------------------------------------ vocabulary
def test_vocab_file_stuff_marker(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# street\nsky, heaven [stuff]\nroad,street [STUFF]  \ncar\nperson [thing]\n", encoding="utf-8")
    vocab = Vocabulary.from_file(path)
    assert vocab.classes == ["sky", "road", "car", "person"]
    assert vocab.synonyms[0] == ["sky", "heaven"] and vocab.synonyms[1] == ["road", "street"]
    assert vocab.stuff == [True, True, False, False]


def test_vocab_string_and_names_stuff_marker():
    assert Vocabulary.from_string("sky [stuff],car").stuff == [True, False]
    v = Vocabulary.from_names(["sky|heaven [stuff]", "car"])
    assert v.synonyms == [["sky", "heaven"], ["car"]] and v.stuff == [True, False]
    assert Vocabulary([["sky"], ["car"]]).stuff == [False, False]  # default: things
    with pytest.raises(InputError):
        Vocabulary.from_string("[stuff], car")  # a marker is not a name


def test_mark_stuff_by_name_or_synonym_and_unknown_is_error():
    vocab = Vocabulary.from_string("sky|heaven,road,car")
    assert vocab.mark_stuff("Heaven, road") is vocab
    assert vocab.stuff == [True, True, False]
    with pytest.raises(InputError, match="boat"):
        vocab.mark_stuff(["boat"])


def test_stuff_flags_must_match_classes():
    with pytest.raises(InputError):
        Vocabulary([["sky"], ["car"]], stuff=[True])


# ------------------------------------------------------------------------------------ task math
D = 4
T = 0.1


def onehot(k: int, d: int = D) -> torch.Tensor:
    v = torch.zeros(d)
    v[k] = 1
    return v


def rect_mask(h, w, rows, cols, inside=0.9, outside=0.1) -> torch.Tensor:
    m = torch.full((h, w), outside)
    m[rows[0] : rows[1], cols[0] : cols[1]] = inside
    return m


def make_regions(specs, h=8, w=8, image_size=None):
    """specs: (mask [h,w], embedding [D], objectness)."""
    masks = torch.stack([s[0] for s in specs])
    emb = torch.stack([s[1] / s[1].norm() for s in specs])
    return Regions(masks, emb, torch.tensor([s[2] for s in specs]), image_size or (h, w))


PROMPTS = torch.eye(D)  # one prompt per class, class k = axis k
OWNER = torch.arange(D)


def prob(cosines, k, temperature=T):
    """Softmax over classes of cosine / temperature at class k, by hand."""
    e = [math.exp(c / temperature) for c in cosines]
    return e[k] / sum(e)


def test_classify_regions_score_is_softmax_times_objectness():
    z = torch.tensor([0.8, 0.6, 0.0, 0.0])  # cosines 0.8, 0.6, 0, 0 to the four classes
    regions = make_regions([(rect_mask(8, 8, (0, 8), (0, 8)), z, 0.5)])
    out = classify_regions(regions, PROMPTS, OWNER, D, temperature=T)
    assert out.labels.tolist() == [0]
    assert out.cosine.item() == pytest.approx(0.8, abs=1e-6)
    assert out.scores.item() == pytest.approx(0.5 * prob([0.8, 0.6, 0, 0], 0), rel=1e-5)
    hot = classify_regions(regions, PROMPTS, OWNER, D, temperature=1.0).scores.item()
    assert hot == pytest.approx(0.5 * prob([0.8, 0.6, 0, 0], 0, 1.0), rel=1e-5)
    # max over a class's prompts: a second prompt of class 1 closer to z wins the argmax
    prompts = torch.cat([PROMPTS, torch.tensor([[0.8, 0.6, 0.0, 0.0]])])
    out = classify_regions(regions, prompts, torch.cat([OWNER, torch.tensor([1])]), D, temperature=T)
    assert out.labels.tolist() == [1]


def test_instances_overlap_resolution_stuff_excluded_and_order():
    stuff = [False, False, True, True]
    regions = make_regions(
        [
            (rect_mask(8, 8, (0, 8), (0, 4)), onehot(0), 0.9),  # A: cols 0-3, 32 px, best
            (rect_mask(8, 8, (0, 8), (2, 8)), onehot(1), 0.5),  # B: cols 2-7, 48 px, keeps 32 (2/3)
            (rect_mask(8, 8, (0, 4), (0, 2)), onehot(0), 0.3),  # C: inside A, keeps nothing
            (rect_mask(8, 8, (0, 8), (0, 8)), onehot(2), 0.99),  # stuff: never an instance
        ]
    )
    p = prob([1, 0, 0, 0], 0)
    out = instance_segmentation(regions, PROMPTS, OWNER, D, stuff=stuff, temperature=T)
    assert [(i.region, i.label) for i in out] == [(0, 0), (1, 1)]
    assert [i.score for i in out] == pytest.approx([0.9 * p, 0.5 * p], rel=1e-5)
    expected_a = np.zeros((8, 8), bool)
    expected_a[:, :4] = True
    expected_b = np.zeros((8, 8), bool)
    expected_b[:, 4:] = True
    np.testing.assert_array_equal(out[0].mask.numpy(), expected_a)
    np.testing.assert_array_equal(out[1].mask.numpy(), expected_b)
    assert out[0].bbox == (0, 0, 4, 8) and out[1].bbox == (4, 0, 4, 8)
    assert out[0].mask.dtype == torch.bool
    # B keeps 32/48 = 0.67 of its mask: dropped when 0.7 must be left
    strict = instance_segmentation(regions, PROMPTS, OWNER, D, stuff=stuff, temperature=T, overlap_keep=0.7)
    assert [i.region for i in strict] == [0]
    # A (32 px) is tiny at min_area 33: B then paints all of its 48 pixels
    big = instance_segmentation(regions, PROMPTS, OWNER, D, stuff=stuff, temperature=T, min_area=33)
    assert [i.region for i in big] == [1] and big[0].area == 48
    # min_score between the two scores keeps only A; without stuff flags the stuff region wins all
    assert [i.region for i in instance_segmentation(regions, PROMPTS, OWNER, D, stuff, T, min_score=0.6)] == [0]
    assert [i.region for i in instance_segmentation(regions, PROMPTS, OWNER, D, temperature=T)] == [3]
    assert len(instance_segmentation(regions, PROMPTS, OWNER, D, stuff, T, max_instances=1)) == 1


def test_instance_masks_are_upsampled_to_the_image_and_binarised():
    # a 4x4 mask whose left half is on, for an 8x8 image: bilinear upsampling puts the 0.5
    # crossing exactly between columns 3 and 4
    small = torch.zeros(4, 4)
    small[:, :2] = 1.0
    regions = make_regions([(small, onehot(0), 1.0)], image_size=(8, 8))
    (inst,) = instance_segmentation(regions, PROMPTS, OWNER, D, temperature=T)
    expected = np.zeros((8, 8), bool)
    expected[:, :4] = True
    np.testing.assert_array_equal(inst.mask.numpy(), expected)
    (wide,) = instance_segmentation(regions, PROMPTS, OWNER, D, temperature=T, out_size=(8, 16))
    assert wide.mask.shape == (8, 16) and wide.bbox == (0, 0, 8, 8)


def test_mask_bbox_agrees_with_pycocotools():
    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = np.zeros((30, 40), bool)
        y0, x0 = rng.integers(0, 20, 2)
        mask[y0 : y0 + rng.integers(1, 10), x0 : x0 + rng.integers(1, 20)] = True
        mask[rng.integers(0, 30), rng.integers(0, 40)] = True
        expected = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
        assert list(mask_bbox(torch.from_numpy(mask))) == expected.tolist()


def test_panoptic_things_first_stuff_merged_per_class_and_void():
    # classes: 0 "a" thing, 1 "b" thing, 2 "sky" stuff, 3 "road" stuff
    regions = make_regions(
        [
            (rect_mask(8, 8, (4, 8), (0, 4)), onehot(0), 0.9),  # thing: rows 4-7, cols 0-3
            (rect_mask(8, 8, (0, 2), (0, 8)), onehot(2), 0.8),  # sky rows 0-1
            (rect_mask(8, 8, (2, 4), (0, 8)), onehot(2), 0.7),  # sky rows 2-3 (merged with the above)
            (rect_mask(8, 8, (4, 7), (0, 8)), onehot(3), 0.6),  # road rows 4-6, under the thing
            (rect_mask(8, 8, (7, 8), (4, 8)), onehot(3), 0.01),  # road, score below min_score
        ]
    )
    flags = [False, False, True, True]
    pan = panoptic_segmentation(regions, PROMPTS, OWNER, D, flags, temperature=T, min_score=0.2, min_area=12)
    expected = np.zeros((8, 8), np.int32)
    expected[4:, :4] = 1
    expected[:4] = 2
    expected[4:7, 4:] = 3  # row 7, cols 4-7 stay void
    np.testing.assert_array_equal(pan.id_map.numpy(), expected)
    assert pan.id_map.dtype == torch.int32
    p = prob([1, 0, 0, 0], 0)
    got = [(s.id, s.label, s.isthing, s.area, s.bbox) for s in pan.segments]
    assert got == [(1, 0, True, 16, (0, 4, 4, 4)), (2, 2, False, 32, (0, 0, 8, 4)), (3, 3, False, 12, (4, 4, 4, 3))]
    assert [s.score for s in pan.segments] == pytest.approx([0.9 * p, 0.8 * p, 0.6 * p], rel=1e-5)
    # a stuff segment smaller than min_area becomes void
    small = panoptic_segmentation(regions, PROMPTS, OWNER, D, flags, T, 0.2, min_area=13)
    assert [s.label for s in small.segments] == [0, 2]
    assert (small.id_map.numpy()[4:7, 4:] == 0).all()


# ------------------------------------------------------------------------------------ formats
def test_rle_roundtrip_and_text_counts():
    rng = np.random.default_rng(0)
    mask = rng.random((13, 17)) > 0.6
    rle = formats.encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [13, 17]
    json.dumps(rle)
    np.testing.assert_array_equal(formats.decode_rle(rle), mask)
    raw = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == raw["counts"].decode()


def test_panoptic_colour_encoding():
    ids = np.array([[0, 1, 255], [256, 70000, 256**3 - 1]])
    rgb = formats.id_map_to_rgb(ids)
    assert rgb.dtype == np.uint8
    assert rgb[1, 1].tolist() == [112, 17, 1]  # 70000 = 112 + 256*17 + 65536*1
    assert rgb[1, 0].tolist() == [0, 1, 0] and rgb[0, 2].tolist() == [255, 0, 0]
    np.testing.assert_array_equal(formats.rgb_to_id(rgb), ids)
    with pytest.raises(ValueError):
        formats.id_map_to_rgb(np.array([[256**3]]))


def test_write_panoptic_refuses_map_and_json_that_disagree(tmp_path):
    ids = np.array([[0, 1], [2, 2]], np.int32)
    record = {"segments_info": [{"id": 1}, {"id": 2}]}
    formats.write_panoptic(tmp_path / "a.png", tmp_path / "a.json", ids, record)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(formats.rgb_to_id(np.asarray(im)), ids)
    with pytest.raises(ValueError):
        formats.write_panoptic(tmp_path / "b.png", tmp_path / "b.json", ids, {"segments_info": [{"id": 1}]})
    assert not (tmp_path / "b.png").exists()


def test_coco_image_id():
    assert formats.coco_image_id("000000000139") == 139
    assert formats.coco_image_id("street") == "street"


# ------------------------------------------------------------------------------------ API / CLI
@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    arr[:20] = (90, 150, 230)
    path = tmp_path_factory.mktemp("ip") / "000000000042.png"
    Image.fromarray(arr).save(path)
    return path


def test_api_instance_result_contract(tiny_model_dir, text_encoder, image_path, tmp_path):
    seg = omniseg.load(tiny_model_dir)
    vocab = Vocabulary.from_string("sky,road,car")
    result = seg.segment(image_path, classes=vocab, task="instance", threshold=0.0, stuff="road")
    assert vocab.stuff == [False, False, False]  # the caller's vocabulary is not changed
    assert result.stuff == [False, True, False]
    assert len(result.instances) >= 1
    union = np.zeros((48, 64), int)
    for inst in result.instances:
        assert inst.mask.shape == (48, 64) and inst.label != 1  # road is stuff
        union += inst.mask.numpy()
    assert union.max() == 1  # disjoint
    scores = [i.score for i in result.instances]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    data = json.loads(json.dumps(result.to_json()))
    assert data["task"] == "instance" and len(data["instances"]) == len(result.instances)
    pic = result.overlay()
    assert pic.height == 48 and pic.width >= 64
    paths = result.save(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_instances.json", "x_overlay.png"]
    assert paths["instances"] == tmp_path / "x_instances.json"
    with pytest.raises(InputError):
        seg.segment(image_path, classes="sky", task="boxes")


def test_api_panoptic_is_consistent_with_semantic_classes(tiny_model_dir, text_encoder, image_path):
    seg = omniseg.load(tiny_model_dir)
    result = seg.segment(image_path, classes="sky [stuff],road [stuff],car", task="panoptic", threshold=0.0)
    ids = {s.id for s in result.segments}
    assert set(np.unique(result.id_map)) - {0} == ids
    for s in result.segments:
        assert s.area == int((result.id_map == s.id).sum())
        assert s.isthing == (s.label == 2)
    stuff_labels = [s.label for s in result.segments if not s.isthing]
    assert len(stuff_labels) == len(set(stuff_labels))  # one segment per stuff class
    assert result.to_json()["task"] == "panoptic"


def test_cli_segment_instance_writes_coco_results(image_path, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", image_path, "--classes", "sky,road,car", "--task", "instance", "--threshold", "0"]
    code, stdout, _ = run([*argv, "--out", out, "--model", tiny_model_dir], capsys)
    assert code == 0 and "instances" in stdout
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "000000000042_instances.json",
        "000000000042_overlay.png",
    ]
    records = json.loads((out / "000000000042_instances.json").read_text())
    assert isinstance(records, list) and records
    classes = ["sky", "road", "car"]
    for r in records:
        assert r["image_id"] == 42
        assert r["category_name"] == classes[r["category_id"] - 1]
        assert formats.decode_rle(r["segmentation"]).shape == (48, 64)
    # pycocotools reads the file as it is, against a ground truth that has the image
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 42, "height": 48, "width": 64}],
        "annotations": [],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)],
    }
    gt.createIndex()
    dt = gt.loadRes(str(out / "000000000042_instances.json"))
    assert len(dt.getAnnIds()) == len(records)
    with Image.open(out / "000000000042_overlay.png") as im:
        assert im.height == 48


def test_cli_segment_panoptic_png_and_json(image_path, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", image_path, "--classes", "sky,road,car", "--stuff", "sky,road", "--task", "panoptic"]
    code, _, _ = run([*argv, "--threshold", "0", "--out", out, "--model", tiny_model_dir, "--quiet"], capsys)
    assert code == 0
    stem = "000000000042"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        f"{stem}{s}" for s in ("_panoptic.png", "_panoptic.json", "_overlay.png")
    )
    with Image.open(out / f"{stem}_panoptic.png") as im:
        assert im.mode == "RGB" and im.size == (64, 48)
        ids = formats.rgb_to_id(np.asarray(im))
    record = json.loads((out / f"{stem}_panoptic.json").read_text())
    assert record["image_id"] == 42 and record["file_name"] == f"{stem}_panoptic.png"
    assert record["categories"] == [
        {"id": 1, "name": "sky", "isthing": 0},
        {"id": 2, "name": "road", "isthing": 0},
        {"id": 3, "name": "car", "isthing": 1},
    ]
    assert record["segments_info"]
    assert {s["id"] for s in record["segments_info"]} == set(np.unique(ids).tolist()) - {0}
    for s in record["segments_info"]:
        mask = ids == s["id"]
        assert s["area"] == int(mask.sum())
        assert s["bbox"] == mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))).tolist()
        assert s["isthing"] == int(s["category_id"] == 3)
        assert {"id", "category_id", "isthing", "area", "bbox", "score"} <= s.keys()


def test_cli_segment_skip_existing_per_task(image_path, tiny_model_dir, tmp_path, capsys):
    args = ["segment", image_path, "--classes", "sky,car", "--task", "instance", "--out", tmp_path]
    args += ["--model", tiny_model_dir, "--quiet"]
    assert run(args, capsys)[0] == 0
    target = tmp_path / "000000000042_instances.json"
    target.write_text('"sentinel"')
    assert run([*args, "--skip-existing"], capsys)[0] == 0
    assert json.loads(target.read_text()) == "sentinel"
    assert run(args, capsys)[0] == 0
    assert isinstance(json.loads(target.read_text()), list)


@pytest.mark.parametrize(
    "extra",
    [["--task", "boxes"], ["--stuff", "boat"], ["--classes", "[stuff]"]],
)
def test_cli_segment_bad_task_or_stuff_is_one_line_error(extra, image_path, tiny_model_dir, tmp_path, capsys):
    argv = ["segment", image_path, "--classes", "sky,car", "--out", tmp_path / "o", "--model", tiny_model_dir]
    code, _, err = run([*argv, *extra], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ PQ
def encode_ids(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic colours, written here independently of omniseg.formats."""
    ids = ids.astype(np.int64)
    return np.dstack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255]).astype(np.uint8)


PQ_CATEGORIES = {1: True, 2: True, 3: False, 4: False}  # 1, 2 things; 3, 4 stuff


def random_panoptic_pair(rng: np.random.Generator, h: int = 24, w: int = 32):
    """A ground truth (stuff split, things, maybe a crowd, void band) and a perturbed prediction."""
    gt = np.zeros((h, w), np.int64)
    gt_segs: list[Segment] = []

    def paint(target, segs, mask, category, crowd=False, sid=None):
        if not mask.any():
            return
        sid = sid or (len(segs) + 1) * 7 + int(rng.integers(0, 5))  # ids need not be 1..S
        target[mask] = sid
        segs.append(Segment(sid, category, crowd))

    rows, cols = np.mgrid[0:h, 0:w]
    split = int(rng.integers(6, h - 6))
    paint(gt, gt_segs, rows < split, 3)
    paint(gt, gt_segs, rows >= split, 4)
    boxes = []
    for _ in range(int(rng.integers(1, 5))):
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        bh, bw = int(rng.integers(3, 10)), int(rng.integers(3, 12))
        category = int(rng.integers(1, 3))
        crowd = bool(rng.random() < 0.2)
        box = (rows >= y) & (rows < y + bh) & (cols >= x) & (cols < x + bw)
        paint(gt, gt_segs, box, category, crowd)
        boxes.append((y, x, bh, bw, category))
    void_row = int(rng.integers(0, h))
    gt[void_row : void_row + int(rng.integers(0, 3))] = 0
    present = set(np.unique(gt).tolist())
    gt_segs = [s for s in gt_segs if s.id in present]

    pred = np.zeros((h, w), np.int64)
    pred_segs: list[Segment] = []
    jitter = int(rng.integers(-3, 4))
    paint(pred, pred_segs, rows < split + jitter, 3)
    paint(pred, pred_segs, rows >= split + jitter, 4 if rng.random() < 0.8 else 3)
    for y, x, bh, bw, category in boxes:
        if rng.random() < 0.15:
            continue  # missed object
        dy, dx, dh, dw = (int(v) for v in rng.integers(-2, 3, 4))
        box = (rows >= y + dy) & (rows < y + dy + bh + dh) & (cols >= x + dx) & (cols < x + dx + bw + dw)
        paint(pred, pred_segs, box, category if rng.random() < 0.8 else 3 - category)
    for _ in range(int(rng.integers(0, 3))):  # spurious segments, some on void
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        box = (rows >= y) & (rows < y + int(rng.integers(1, 5))) & (cols >= x) & (cols < x + int(rng.integers(1, 8)))
        paint(pred, pred_segs, box, int(rng.integers(1, 5)))
    if rng.random() < 0.5:
        pred[:, int(rng.integers(0, w))] = 0  # a void column in the prediction
    present = set(np.unique(pred).tolist())
    pred_segs = [s for s in pred_segs if s.id in present]
    return gt, gt_segs, pred, pred_segs


def write_coco_panoptic(root: Path, pairs) -> tuple[Path, Path]:
    """The pairs as panopticapi's input: GT and prediction JSON + PNG folders."""
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir()
    gt_json = {"images": [], "annotations": [], "categories": []}
    gt_json["categories"] = [{"id": c, "name": f"c{c}", "isthing": int(t)} for c, t in PQ_CATEGORIES.items()]
    pred_json = {"annotations": []}
    for i, (gt, gt_segs, pred, pred_segs) in enumerate(pairs, start=1):
        name = f"{i:04d}.png"
        Image.fromarray(encode_ids(gt)).save(root / "gt" / name)
        Image.fromarray(encode_ids(pred)).save(root / "pred" / name)
        gt_json["images"].append({"id": i, "file_name": f"{i:04d}.jpg", "height": gt.shape[0], "width": gt.shape[1]})
        gt_json["annotations"].append(
            {
                "image_id": i,
                "file_name": name,
                "segments_info": [
                    {
                        "id": s.id,
                        "category_id": s.category_id,
                        "iscrowd": int(s.iscrowd),
                        "area": int((gt == s.id).sum()),
                        "bbox": [0, 0, 1, 1],
                    }
                    for s in gt_segs
                ],
            }
        )
        pred_json["annotations"].append(
            {
                "image_id": i,
                "file_name": name,
                "segments_info": [{"id": s.id, "category_id": s.category_id} for s in pred_segs],
            }
        )
    (root / "gt.json").write_text(json.dumps(gt_json))
    (root / "pred.json").write_text(json.dumps(pred_json))
    return root / "gt.json", root / "pred.json"


def test_pq_matches_hotcoco_panopticapi_reference(tmp_path, capsys):
    from hotcoco.panoptic import pq_compute

    rng = np.random.default_rng(2024)
    pairs = [random_panoptic_pair(rng) for _ in range(40)]
    ours = PanopticQuality()
    for gt, gt_segs, pred, pred_segs in pairs:
        ours.update(gt, gt_segs, pred, pred_segs)
    gt_json, pred_json = write_coco_panoptic(tmp_path, pairs)
    ref = pq_compute(gt_json, pred_json, tmp_path / "gt", tmp_path / "pred")
    capsys.readouterr()
    assert ref.get("reference_deviations", []) == []
    for name, flag in (("All", None), ("Things", True), ("Stuff", False)):
        got = ours.average(PQ_CATEGORIES, flag)
        assert got["n"] == ref[name]["n"] > 0
        for key in ("pq", "sq", "rq"):
            assert got[key] == pytest.approx(ref[name][key], abs=1e-6), (name, key)
    per_class = ours.average(PQ_CATEGORIES)["per_class"]
    for category, r in ref["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert per_class[int(category)][key] == pytest.approx(r[key], abs=1e-6)
    counts = ours.counts
    # the fixture must exercise every rule: FP, FN, crowd and imperfect matches all occur
    assert sum(c.fp for c in counts.values()) > 0 and sum(c.fn for c in counts.values()) > 0
    crowd_categories = [[s.category_id for s in p[1] if s.iscrowd] for p in pairs]
    assert any(len(c) > len(set(c)) for c in crowd_categories)  # panopticapi's "last crowd wins" quirk
    assert 0 < ours.average(PQ_CATEGORIES)["sq"] < 1


def test_pq_rules_by_hand():
    """One 4x10 image, every rule once; numbers worked out on paper."""
    gt = np.zeros((4, 10), np.int64)
    gt[:, 0:4] = 1  # thing cat 1, 16 px
    gt[:, 4:8] = 2  # stuff cat 3, 16 px
    gt[:, 9] = 3  # crowd of cat 2, 4 px; column 8 is void
    gt_segs = [Segment(1, 1), Segment(2, 3), Segment(3, 2, iscrowd=True)]
    pred = np.zeros((4, 10), np.int64)
    pred[:, 0:3] = 10  # cat 1: 12 px inside gt 1 -> IoU 12/16 = 0.75, TP
    pred[:, 3:5] = 11  # cat 3: 4 px on gt 1, 4 on gt 2 -> IoU 4/(8+16-4) = 0.2, FP
    pred[:, 5:9] = 12  # cat 3: 12 px on gt 2 + 4 void -> IoU 12/(16+16-12-4) = 0.75, TP
    pred[:, 9] = 13  # cat 2 entirely on its crowd: ignored
    pred_segs = [Segment(10, 1), Segment(11, 3), Segment(12, 3), Segment(13, 2)]
    pq = PanopticQuality()
    pq.update(gt, gt_segs, pred, pred_segs)
    assert (pq.counts[1].tp, pq.counts[1].fp, pq.counts[1].fn) == (1, 0, 0)
    assert (pq.counts[3].tp, pq.counts[3].fp, pq.counts[3].fn) == (1, 1, 0)
    assert 2 not in pq.counts or pq.counts[2].fp == 0
    res = pq.average(PQ_CATEGORIES)
    # cat 1: PQ 0.75; cat 3: 0.75 / (1 + 0.5) = 0.5; cat 2 and 4: no TP/FP/FN -> left out
    assert res["n"] == 2
    assert res["pq"] == pytest.approx((0.75 + 0.5) / 2)
    assert res["sq"] == pytest.approx(0.75) and res["rq"] == pytest.approx((1 + 1 / 1.5) / 2)
    # IoU exactly 0.5 is not a match (panopticapi: > 0.5)
    half = PanopticQuality()
    p2 = np.zeros((4, 10), np.int64)
    p2[:, 0:2] = 5  # 8 of gt 1's 16 px -> IoU 0.5
    half.update(gt, gt_segs[:1], p2, [Segment(5, 1)])
    assert (half.counts[1].tp, half.counts[1].fp, half.counts[1].fn) == (0, 1, 1)


# ------------------------------------------------------------------------------------ mask AP
def test_mask_ap_equals_cocoeval_on_independently_built_ground_truth():
    rng = np.random.default_rng(11)
    h, w = 32, 40
    # ground truth painted here (visible masks, as in instances/): background 0, cat 1, dog 2
    things = {1: "cat", 2: "dog"}
    gt_images, ref_gt, dets = [], {"images": [], "annotations": [], "categories": []}, []
    ref_gt["categories"] = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    roles = ClassRoles(void=[True, False, False], isthing=[False, True, True], has_instances=True)
    for image_id in range(1, 7):
        classes = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint16)
        objects = []
        for k in range(1, int(rng.integers(2, 5))):
            y, x = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
            m = np.zeros((h, w), bool)
            m[y : y + int(rng.integers(4, 14)), x : x + int(rng.integers(4, 16))] = True
            c = int(rng.integers(1, 3))
            classes[m], inst[m] = c, k
            objects.append((k, c))
        if image_id % 3 == 0:  # a crowd: thing pixels without an instance id
            classes[-5:, -8:], inst[-5:, -8:] = 1, 0
        ref_gt["images"].append({"id": image_id, "height": h, "width": w})
        for k, c in objects:
            m = inst == k
            if not m.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            ref_gt["annotations"].append(
                {
                    "id": len(ref_gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": c,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
            # detections: a shifted copy (right class, sometimes wrong) and a random false one
            shifted = np.roll(m, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
            label = c if rng.random() < 0.8 else 3 - c
            dets.append((image_id, shifted, label, float(rng.random())))
        crowd = (classes == 1) & (inst == 0)
        if crowd.any():
            rle = mask_utils.encode(np.asfortranarray(crowd.astype(np.uint8)))
            ref_gt["annotations"].append(
                {
                    "id": len(ref_gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 1,
                }
            )
            dets.append((image_id, crowd, 1, 0.99))  # a detection of the crowd: neither TP nor FP
        fake = np.zeros((h, w), bool)
        fake[:3, :3] = True
        dets.append((image_id, fake, int(rng.integers(1, 3)), float(rng.random())))
        gt_images.append((image_id, *ground_truth_segments(classes, inst.astype(np.int64), roles)))

    results = []
    for image_id, m, label, score in dets:
        results += formats.instance_records([m], [label], [score], image_id, [0, 1, 2])
    ours = mask_ap(coco_ground_truth(gt_images, things), results)

    ref = COCO()
    ref.dataset = ref_gt
    ref.createIndex()
    ref_dets = [
        {
            "image_id": i,
            "category_id": c,
            "segmentation": mask_utils.encode(np.asfortranarray(m.astype(np.uint8))),
            "score": s,
        }
        for i, m, c, s in dets
    ]
    evaluator = COCOeval(ref, ref.loadRes(ref_dets), iouType="segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert 0 < evaluator.stats[0] < 1  # a fixture that can tell right from wrong
    assert ours["AP"] == pytest.approx(evaluator.stats[0], abs=1e-6)
    assert ours["AP50"] == pytest.approx(evaluator.stats[1], abs=1e-6)
    assert ours["AP75"] == pytest.approx(evaluator.stats[2], abs=1e-6)


def test_mask_ap_edge_cases():
    gt = {"images": [{"id": 1, "height": 4, "width": 4}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    assert math.isnan(mask_ap(gt, [])["AP"])
    gt["annotations"] = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": formats.encode_rle(np.ones((4, 4), bool)),
            "area": 16,
            "bbox": [0, 0, 4, 4],
            "iscrowd": 0,
        }
    ]
    assert mask_ap(gt, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    perfect = formats.instance_records([np.ones((4, 4), bool)], [0], [0.9], 1, [1])
    assert mask_ap(gt, perfect)["AP"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ dataset GT
def test_ground_truth_segments_void_crowd_stuff():
    classes = np.array(
        [
            [0, 0, 1, 1, 255],
            [2, 2, 1, 1, 1],
            [3, 3, 3, 3, 3],
        ],
        np.uint8,
    )
    inst = np.array([[0, 0, 4, 4, 0], [9, 9, 4, 4, 0], [0, 0, 5, 5, 0]])
    # 0 background (void), 1 cat, 2 dog (things), 3 grass (stuff: instance ids there are ignored)
    roles = ClassRoles(void=[True, False, False, False], isthing=[False, True, True, False], has_instances=True)
    id_map, segs = ground_truth_segments(classes, inst, roles)
    got = [(s.category_id, s.iscrowd, s.area, s.bbox) for s in segs]
    assert got == [
        (1, False, 4, (2, 0, 2, 2)),  # instance 4
        (2, False, 2, (0, 1, 2, 1)),  # instance 9
        (1, True, 1, (4, 1, 1, 1)),  # cat pixel without an instance: crowd
        (3, False, 5, (0, 2, 5, 1)),  # grass, one segment
    ]
    expected = np.array([[0, 0, 1, 1, 0], [2, 2, 1, 1, 3], [4, 4, 4, 4, 4]])
    np.testing.assert_array_equal(id_map, expected)
    # without instance maps everything non-void is stuff, one segment per class
    flat = ClassRoles(void=[True, False, False, False], isthing=[False] * 4, has_instances=False)
    _, segs = ground_truth_segments(classes, None, flat)
    assert [(s.category_id, s.area) for s in segs] == [(1, 5), (2, 2), (3, 5)]


# ------------------------------------------------------------------------------------ evaluation end to end
CLASSES_IP = ["background", "cat", "dog", "grass"]


def write_instance_dataset(root: Path, n: int = 4, seed: int = 0) -> tuple[Path, dict]:
    """Uniform layout with instances/: colours name the class, so an oracle can find the objects.

    Returns the root and {image hash: (class map, instance map)}."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "instances").mkdir()
    (root / "classes.json").write_text(json.dumps(CLASSES_IP))
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        h, w = 40, 48
        classes = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint16)
        classes[30:] = 3  # grass
        for k in (1, 2):
            y, x = int(rng.integers(2, 20)), 4 + 22 * (k - 1) + int(rng.integers(0, 4))
            classes[y : y + 10, x : x + 16] = k  # cat left, dog right, never overlapping
            inst[y : y + 10, x : x + 16] = k
        classes[0, :] = 255
        colours = np.array([[20, 20, 20], [200, 50, 50], [50, 50, 200], [40, 180, 40]], np.uint8)
        image = colours[np.where(classes == 255, 0, classes)]
        Image.fromarray(image).save(root / "images" / f"im{i}.png")
        Image.fromarray(classes).save(root / "masks" / f"im{i}.png")
        Image.fromarray(inst).save(root / "instances" / f"im{i}.png")
        truth[hashlib.sha1(image.tobytes()).hexdigest()] = (classes, inst)
    return root, truth


class OneHotEncoder:
    """Text encoder stand-in: class name -> axis (unknown words -> the last axis)."""

    def __init__(self, names):
        self.index = {n: k for k, n in enumerate(names)}

    def encode(self, texts):
        out = np.zeros((len(texts), len(self.index) + 1), np.float32)
        for row, t in enumerate(texts):
            out[row, self.index.get(t, len(self.index))] = 1
        return out


class OracleSource:
    """Regions straight from the ground truth: one region per object and per stuff/void class,
    embedded on its class's axis. ``drop`` removes the objects of one class."""

    name = "oracle"
    class_temperature = 0.1

    def __init__(self, truth, drop: int | None = None):
        self.truth, self.drop = truth, drop

    def regions(self, image):
        classes, inst = self.truth[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]
        masks, emb = [], []
        for k in np.unique(inst[inst > 0]):
            c = int(classes[inst == k][0])
            if c != self.drop:
                masks.append(inst == k)
                emb.append(np.eye(len(CLASSES_IP) + 1)[c])
        for c in (0, 3):
            masks.append(classes == c)
            emb.append(np.eye(len(CLASSES_IP) + 1)[c])
        m = torch.tensor(np.stack(masks), dtype=torch.float32)
        return Regions(m, torch.tensor(np.stack(emb), dtype=torch.float32), torch.ones(len(masks)), classes.shape)


def oracle_door(truth, drop: int | None = None) -> Segmenter:
    """The door on the oracle source (any region source object goes behind the same door)."""
    return Segmenter(OracleSource(truth, drop), OneHotEncoder(CLASSES_IP))


def test_evaluate_panoptic_oracle_is_perfect_and_missing_class_is_counted(tmp_path):
    root, truth = write_instance_dataset(tmp_path / "ds")
    report = evaluate_panoptic(oracle_door(truth), root, stuff=("grass",), progress=False)
    assert report["PQ"] == 100.0 and report["things"]["n"] == 2 and report["stuff"]["n"] == 1
    assert report["ground_truth"]["things"] == ["cat", "dog"] and report["ground_truth"]["stuff"] == ["grass"]
    assert report["images"] == 4
    # no dog found: dog PQ 0 (4 FN), cat and grass still 100 -> all = 200/3, things = 50, RQ likewise
    missing = evaluate_panoptic(oracle_door(truth, drop=2), root, stuff=("grass",), progress=False)
    assert missing["per_class"]["dog"]["pq"] == 0.0
    assert missing["PQ"] == pytest.approx(200 / 3, abs=0.006)
    assert missing["things"]["PQ"] == 50.0 and missing["stuff"]["PQ"] == 100.0
    # grass as a thing (the default with instances/): its pixels are crowd, the stuff prediction ignored
    as_thing = evaluate_panoptic(oracle_door(truth), root, progress=False)
    assert as_thing["stuff"]["n"] == 0 and as_thing["things"]["n"] == 2


def test_evaluate_instances_oracle_and_missing_class(tmp_path):
    root, truth = write_instance_dataset(tmp_path / "ds")
    report = evaluate_instances(oracle_door(truth), root, stuff=("grass",), progress=False)
    # 4 images x (cat, dog, background region): "background" is not in the evaluation vocabulary,
    # so the background region is named by its nearest class at score 1/3 and ranks below every object
    assert report["AP"] == 100.0 and report["AP50"] == 100.0 and report["detections"] == 12
    missing = evaluate_instances(oracle_door(truth, drop=2), root, stuff=("grass",), progress=False)
    assert missing["AP"] == 50.0  # cat perfect, dog never detected: mean over the two categories


def test_cli_eval_panoptic_and_instance(tmp_path, tiny_model_dir, capsys):
    root, _ = write_instance_dataset(tmp_path / "ds", n=3)
    for task, keys in (("panoptic", {"PQ", "SQ", "RQ", "things", "stuff", "per_class"}), ("instance", {"AP"})):
        out = tmp_path / f"{task}.json"
        argv = ["eval", root, "--task", task, "--model", tiny_model_dir, "--json", out, "--quiet"]
        code, stdout, _ = run([*argv, "--stuff", "grass", "--limit", "2"], capsys)
        assert code == 0, task
        report = json.loads(out.read_text())
        assert keys <= report.keys() and report["images"] == 2
        assert ("PQ" if task == "panoptic" else "mask AP") in stdout
        for key in ("PQ", "AP", "AP50", "AP75"):
            if report.get(key) is not None:
                assert 0 <= report[key] <= 100


def test_cli_eval_task_errors(tmp_path, tiny_dataset, tiny_model_dir, capsys):
    common = ["--model", tiny_model_dir, "--quiet"]
    code, _, err = run(["eval", tiny_dataset, "--task", "instance", *common], capsys)
    assert_one_line_error(code, err)  # no instances/
    assert "instances" in err
    code, _, err = run(["eval", tiny_dataset, "--task", "panoptic", "--grounding", *common], capsys)
    assert_one_line_error(code, err)
    code, _, err = run(["eval", tiny_dataset, "--task", "panoptic", "--stuff", "boat", *common], capsys)
    assert_one_line_error(code, err)


def test_cli_eval_panoptic_semantic_only_dataset_is_all_stuff(tmp_path, tiny_dataset, tiny_model_dir, capsys):
    out = tmp_path / "r.json"
    code, _, _ = run(
        ["eval", tiny_dataset, "--task", "panoptic", "--model", tiny_model_dir, "--json", out, "--quiet"], capsys
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["things"]["n"] == 0 and report["ground_truth"]["stuff"] == ["sky", "road", "car"]
    assert report["stuff"]["n"] >= 1


@pytest.mark.shared
def test_real_coco_ground_truth(shared_data):
    from omniseg.data.segments import class_roles, read_instance_map
    from omniseg.data.uniform import UniformDataset, read_mask

    for name in ("coco128_seg", "coco_mini"):
        root = shared_data / name
        if not (root / "instances").is_dir():
            pytest.skip(f"{name} not in shared data")
        dataset = UniformDataset(root)
        roles = class_roles(dataset)
        assert roles.void[0] and not any(roles.void[1:]) and all(roles.isthing[1:])
        meta = json.loads((root / "meta.json").read_text())
        crowd_images = 0
        for sample in dataset.samples[:12]:
            classes, inst = read_mask(sample.mask_path), read_instance_map(root / "instances" / f"{sample.id}.png")
            _, segs = ground_truth_segments(classes, inst, roles)
            objects = [s for s in segs if not s.iscrowd]
            assert len(objects) == len(np.unique(inst[inst > 0]))
            assert len(objects) <= meta[sample.id]["n_instances"]
            crowd_images += any(s.iscrowd for s in segs)
            if meta[sample.id].get("n_crowd", 0) == 0:
                assert not any(s.iscrowd for s in segs)
        if name == "coco128_seg":
            assert crowd_images == 0
