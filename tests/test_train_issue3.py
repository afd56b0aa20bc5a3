"""Issue 3: multi-task sources, caption words, ESS head, LSeg+ baseline, pseudo-labels, recall."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import TINY_MODEL_CONFIG, write_uniform_dataset
from omniseg.cli import main
from omniseg.errors import InputError
from omniseg.train.config import DatasetSpec, TrainConfig


def _config(tmp_path, datasets, **overrides):
    cfg = {
        "datasets": datasets,
        "out_dir": str(tmp_path / "run"),
        "steps": 2,
        "batch_size": 4,
        "crop": 48,
        "short_side": 48,
        "checkpoint_every": 2,
        "log_every": 1,
        "warmup_steps": 2,
        "threads": 1,
        "model": {**TINY_MODEL_CONFIG, "trainable_backbone_from": 16},
        **overrides,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def captioned_dataset(tmp_path_factory):
    root = write_uniform_dataset(tmp_path_factory.mktemp("cap") / "cap", n=4)
    captions = {f"img{i:02d}": ["A red car on a grey road under a blue sky."] for i in range(4)}
    (root / "captions.json").write_text(json.dumps(captions))
    return root


@pytest.fixture(scope="module")
def binary_dataset(tmp_path_factory):
    root = write_uniform_dataset(tmp_path_factory.mktemp("bin") / "bin", n=4, classes=["background", "car"], seed=3)
    for path in (root / "masks").iterdir():  # sky/road -> background, car -> foreground
        m = np.asarray(Image.open(path)).copy()
        m[(m == 0) | (m == 1)] = 0
        m[m == 2] = 1
        Image.fromarray(m).save(path)
    return root


@pytest.fixture(scope="module")
def panoptic_dataset(tmp_path_factory):
    root = write_uniform_dataset(tmp_path_factory.mktemp("pan") / "pan", n=4, seed=5)
    (root / "instances").mkdir()
    for path in (root / "masks").iterdir():  # the car is object 1; sky and road have no instance id
        m = np.asarray(Image.open(path))
        Image.fromarray((m == 2).astype(np.uint16)).save(root / "instances" / path.name)
    return root


def test_dataset_spec_validation():
    with pytest.raises(InputError, match="unknown task"):
        DatasetSpec("x", task="depth")
    with pytest.raises(InputError, match="not both"):
        DatasetSpec("x", weight=1.0, ratio=2.0)


def test_weights_and_ratios(tmp_path, tiny_dataset):
    from omniseg.train.data import source_weights

    path = _config(tmp_path, [{"path": str(tiny_dataset), "ratio": 1.0}, {"path": str(tiny_dataset), "ratio": 3.0}])
    cfg = TrainConfig.from_yaml(path)
    np.testing.assert_allclose(source_weights(cfg, [10, 10]), [0.25, 0.75])
    np.testing.assert_allclose(source_weights(cfg, [30, 10]), [0.5, 0.5])  # ratio x size
    cfg.datasets[0].ratio, cfg.datasets[0].weight = None, 1.0
    cfg.datasets[1].ratio, cfg.datasets[1].weight = None, 1.0
    np.testing.assert_allclose(source_weights(cfg, [30, 10]), [0.5, 0.5])


def test_caption_words_offline():
    from omniseg.train.words import caption_words, keep_words

    words = caption_words("A man riding a red skateboard down a busy street next to two sitting people.")
    assert {"man", "red", "skateboard", "busy", "street", "people"} <= set(words)
    assert not {"riding", "a", "down", "to", "two", "sitting"} & set(words)
    rng = np.random.default_rng(0)
    assert keep_words(range(10), 1.0, rng) == list(range(10))
    assert keep_words(range(10), 0.0, rng) == []
    kept = sum(len(keep_words(range(100), 0.75, np.random.default_rng(i))) for i in range(20)) / 2000
    assert 0.65 < kept < 0.85


def test_target_segments_per_task(tiny_dataset):
    from omniseg.data.segments import ClassRoles
    from omniseg.train.data import TrainSource
    from omniseg.train.targets import target_segments

    def source(task, classes):
        k = len(classes)
        roles = ClassRoles([c == "background" for c in classes], [task in ("instance", "panoptic")] * k, False)
        z = torch.zeros(k, 4)
        return TrainSource("s", task, classes, [], [], None, z, torch.arange(k), z, torch.arange(k), roles, None)

    labels = torch.tensor([[0, 0, 1], [1, 2, 255]])
    masks, cls, valid = target_segments(source("semantic", ["background", "a", "b"]), labels, None)
    assert cls.tolist() == [0, 1, 2] and valid.tolist() == [1, 1, 1, 1, 1, 0]
    masks, cls, _ = target_segments(source("binary", ["background", "a", "b"]), labels, None)
    assert cls.tolist() == [1, 2] and masks.shape == (2, 6)
    masks, cls, valid = target_segments(source("pseudo", ["x"]), torch.tensor([[0, 3, 3], [7, 255, 0]]), None)
    assert cls.tolist() == [-1, -1] and valid.tolist() == [0, 1, 1, 1, 0, 0]
    inst = torch.tensor([[0, 0, 1], [2, 3, 0]])
    masks, cls, _ = target_segments(source("instance", ["background", "a", "b"]), labels, inst)
    assert sorted(cls.tolist()) == [1, 1, 2] and masks.sum().item() == 3  # two "a" objects, one "b"
    masks, cls, _ = target_segments(source("caption", ["x"]), labels, None)
    assert len(masks) == 0


def test_ess_loss_and_regularization():
    from omniseg.train import losses as L

    torch.manual_seed(0)
    classes = torch.nn.functional.normalize(torch.randn(12, 16), dim=1)
    pixels = torch.randn(30, 16, requires_grad=True)
    positive = torch.randint(0, 12, (30,))
    loss = L.ess_loss(pixels, positive, classes, k=4, scale=torch.tensor(10.0))
    loss.backward()
    assert torch.isfinite(loss) and pixels.grad is not None and pixels.grad.abs().sum() > 0
    # A pixel equal to its class embedding, far from the rest, has a small loss.
    easy = L.ess_loss(classes[:3] * 1.0, torch.arange(3), classes, k=4, scale=torch.tensor(50.0))
    assert easy < loss
    eye = torch.eye(16)
    assert float(L.ess_regularization(eye, classes)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.ess_regularization(2 * eye, classes)) > 0.5  # norms away from 1 are penalised


def test_faiss_flat_index_matches_exhaustive_search():
    """The ESS head's negatives come from FAISS's exact index (PromptIndex kind "flat")."""
    from omniseg.search import PromptIndex

    torch.manual_seed(1)
    base, queries = torch.randn(50, 8), torch.randn(7, 8)
    index = PromptIndex.build(base.numpy(), kind="flat")
    assert type(index.index).__name__ == "IndexFlatIP"
    scores, ids = index.search(queries.numpy(), 3)
    ref_scores, ref_ids = (queries @ base.T).topk(3, dim=1)
    assert torch.equal(torch.from_numpy(ids), ref_ids)
    torch.testing.assert_close(torch.from_numpy(scores), ref_scores, rtol=1e-4, atol=1e-4)


def test_nearest_class_inference_equals_argmax():
    from omniseg.regions import Regions
    from omniseg.tasks.semantic import pixel_class_logits, semantic_segmentation

    torch.manual_seed(2)
    pe = torch.nn.functional.normalize(torch.randn(8, 5, 6), dim=0)
    prompts = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    owner = torch.tensor([0, 1, 1, 2, 3])
    regions = Regions(torch.zeros(0, 5, 6), torch.zeros(0, 8), torch.zeros(0), (5, 6), None, pe, 1.0)
    label, _ = semantic_segmentation(regions, prompts, owner, 4)
    assert torch.equal(label, pixel_class_logits(pe, prompts, owner, 4).argmax(0))


def test_video_layout_is_read(tmp_path):
    from omniseg.data.uniform import UniformDataset

    root = write_uniform_dataset(tmp_path / "v", n=2)
    (root / "images" / "seq").mkdir()
    (root / "masks" / "seq").mkdir()
    for p in list((root / "images").glob("*.png")):
        p.rename(root / "images" / "seq" / p.name)
    for p in list((root / "masks").glob("*.png")):
        p.rename(root / "masks" / "seq" / p.name)
    ds = UniformDataset(root)
    assert [s.id for s in ds.samples] == ["seq/img00", "seq/img01"] and all(s.mask_path for s in ds.samples)


def test_multi_task_training_with_captions_ess(
    tmp_path, tiny_dataset, captioned_dataset, binary_dataset, panoptic_dataset, capsys
):
    cfg = _config(
        tmp_path,
        [
            {"path": str(tiny_dataset), "weight": 1.0},
            {"path": str(captioned_dataset), "task": "caption", "weight": 1.0},
            {"path": str(binary_dataset), "task": "binary", "ratio": 1.0},
            {"path": str(panoptic_dataset), "task": "panoptic", "ratio": 1.0},
            {"path": str(panoptic_dataset), "task": "instance", "ratio": 1.0},
        ],
        losses={"ess": 1.0},
        ess_negatives=2,
        batch_size=8,
        model={**TINY_MODEL_CONFIG, "trainable_backbone_from": 16, "pixel_head": True, "pixel_weight": 0.5},
    )
    assert main(["train", str(cfg)]) == 0, capsys.readouterr().err
    records = _log(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    for key in ("total", "segmentation", "grounding", "ess", "ess_reg"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert any(r["ess"] > 0 for r in records)
    import omniseg

    seg = omniseg.load(tmp_path / "run" / "model")
    assert seg.source.pixel_weight == 0.5  # the native source reads it from the trained config
    assert seg.segment(np.zeros((40, 48, 3), np.uint8), classes=["sky", "road"]).label_map.shape == (40, 48)


def test_lseg_baseline_trains_and_segments(tmp_path, tiny_dataset, capsys):
    cfg = _config(tmp_path, [{"path": str(tiny_dataset)}], model={**TINY_MODEL_CONFIG, "arch": "lseg"})
    assert main(["train", str(cfg)]) == 0, capsys.readouterr().err
    records = _log(tmp_path / "run")
    assert all(r["pixel_class"] > 0 and r["segmentation"] == 0 for r in records)
    import omniseg

    seg = omniseg.load(tmp_path / "run" / "model")
    assert len(seg.regions(np.zeros((32, 32, 3), np.uint8))) == 0
    result = seg.segment(np.zeros((40, 48, 3), np.uint8), classes=["sky", "road", "car"])
    assert result.label_map.shape == (40, 48) and result.label_map.max() < 3


def test_pseudo_label_then_student(tmp_path, tiny_dataset, tiny_model_dir, capsys):
    out = tmp_path / "pseudo"
    code = main(["pseudo-label", str(tiny_model_dir), str(tiny_dataset / "images"), "--out", str(out), "--quiet",
                 "--min-score", "0", "--min-area", "0"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    masks = sorted((out / "masks").iterdir())
    assert len(masks) == 6 and len(list((out / "images").iterdir())) == 6
    assert json.loads((out / "pseudo_labels.json").read_text())["images"] == 6
    assert any(np.asarray(Image.open(m)).max() > 0 for m in masks)
    cfg = _config(
        tmp_path,
        [{"path": str(tiny_dataset)}, {"path": str(out), "task": "pseudo", "weight": 1.0, "loss_weight": 0.5}],
    )
    assert main(["train", str(cfg)]) == 0, capsys.readouterr().err
    assert all(np.isfinite(r["total"]) for r in _log(tmp_path / "run"))


def test_greedy_matching_is_one_to_one():
    from omniseg.eval.proposals import greedy_match_ious

    ious = np.array([[0.9, 0.8], [0.85, 0.1], [0.0, 0.0]])
    # best pair (0,0)=0.9 first; proposal 0 is then taken, so gt 1 gets nothing better than 0.1
    np.testing.assert_allclose(greedy_match_ious(ious), [0.9, 0.1])
    np.testing.assert_allclose(greedy_match_ious(np.zeros((0, 2))), [0.0, 0.0])


def test_superpixel_proposals_find_flat_regions():
    from omniseg.backends.superpixels import superpixel_proposals
    from omniseg.eval.proposals import greedy_match_ious, mask_ious

    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    image[10:30, 40:60] = (30, 200, 30)
    gt = np.stack([image[..., 0] == 200, image[..., 1] == 200, (image == 0).all(-1)])
    props = superpixel_proposals(image, max_proposals=20)
    assert props.dtype == bool and 0 < len(props) <= 20
    assert (greedy_match_ious(mask_ious(props, gt)) >= 0.9).all()


def test_connected_components_split_separate_objects():
    from omniseg.eval.proposals import connected_components

    two_cars = np.zeros((1, 20, 30), bool)
    two_cars[0, 2:8, 2:12] = True  # 60 px
    two_cars[0, 10:18, 15:28] = True  # 104 px: the larger one comes first
    two_cars[0, 19, 0] = True  # 1 px: below the size floor
    one = np.zeros((1, 20, 30), bool)
    one[0, 5:9, 5:9] = True  # a single component adds nothing new
    parts = connected_components(np.concatenate([two_cars, one]), min_share=0.005)
    assert len(parts) == 2 and parts[0].sum() == 104 and parts[1].sum() == 60
    assert connected_components(one, 0.0).shape == (0, 20, 30)


def test_feature_hierarchy_recovers_regions_of_distinct_features():
    """Pixel features with three distinct directions: the hierarchy holds each region and the whole."""
    from omniseg.eval.proposals import feature_hierarchy_masks, greedy_match_ious, mask_ious

    feats = torch.zeros(8, 24, 32)
    feats[0, :, :16] = 1  # left half
    feats[1, :12, 16:] = 1  # top right
    feats[2, 12:, 16:] = 1  # bottom right
    masks = feature_hierarchy_masks(feats, (48, 64))  # twice the feature grid, as stride 2
    assert masks.dtype == bool and masks.shape[1:] == (48, 64) and masks[0].all()  # the top merge: everything
    gt = np.zeros((4, 48, 64), bool)
    gt[0, :, :32], gt[1, :24, 32:], gt[2, 24:, 32:], gt[3, :, 32:] = True, True, True, True
    # each region, and the right half: the two right regions are as unlike each other as the left,
    # and the fill term merges the pair that fills its box first
    assert (greedy_match_ious(mask_ious(masks, gt)) >= 0.9).all()


def test_recall_cli(tmp_path, tiny_dataset, tiny_model_dir, capsys):
    for source in ("superpixels", "model"):
        out = tmp_path / f"{source}.json"
        argv = ["eval", str(tiny_dataset), "--metric", "recall", "--proposals", "10", "--proposals-from", source,
                "--model", str(tiny_model_dir), "--json", str(out), "--quiet"]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        report = json.loads(out.read_text())
        assert report["gt_segments"] == 18 and report["images"] == 6  # sky, road, car in each of 6 images
        assert 0 <= report["recall@0.9"] <= report["recall@0.7"] <= report["recall@0.5"] <= 100
        assert report["mean_proposals_per_image"] <= 10
    assert json.loads((tmp_path / "superpixels.json").read_text())["recall@0.5"] > 50


def test_shared_datasets_load_for_training(shared_data, tmp_path):
    """Every dataset of ../shared/data is usable as a training source (binary sets as binary)."""
    from omniseg.data.uniform import UniformDataset

    for root in sorted(p for p in shared_data.iterdir() if (p / "classes.json").is_file()):
        ds = UniformDataset(root)
        assert ds.split("train") and ds.labelled(), root.name
    shutil.rmtree(tmp_path, ignore_errors=True)
