"""Foundation-model backends (issue 6) on tiny random transformers models built here: every
adapter x every task it supports, end to end, no network; missing checkpoints fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
import tiny_hf
from conftest import TINY_CLASSES, make_scene
from omniseg.backends.base import ComposedSource
from omniseg.errors import InputError, MissingResourceError
from omniseg.regions import Regions
from omniseg.registry import parse_spec
from omniseg.results import InstanceResult, PanopticResult, SemanticResult
from omniseg.tasks.incontext import incontext
from omniseg.tasks.interactive import click
from omniseg.tasks.refer import refer
from omniseg.tasks.video import video
from test_cli import run as _run

KINDS = ("clip", "siglip", "sam", "seggpt", "mask2former", "oneformer")


@pytest.fixture(scope="session")
def hf(tmp_path_factory) -> dict:
    """kind -> directory of a tiny random checkpoint (save_pretrained)."""
    root = tmp_path_factory.mktemp("hf")
    with torch.random.fork_rng():
        return {kind: getattr(tiny_hf, f"make_{kind}")(root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def scene():
    image, mask = make_scene(np.random.default_rng(3))
    ids = np.where(mask == 2, 1, 0).astype(np.uint8)  # the car = object 1
    return image, ids


# (masks, embed) specs; "{x}" is replaced by the tiny checkpoint of kind x
COMBOS = [
    ("sam:{sam}", None),  # SAM masks + native embeddings
    (None, "clip:{clip}"),  # native masks + CLIP dense features
    (None, "siglip:{siglip}"),
    ("sam:{sam}", "clip:{clip}"),
    ("sam:{sam}", "siglip:{siglip}"),
    ("mask2former:{mask2former}", None),  # its own masks and label embeddings
    ("oneformer:{oneformer}", None),
    ("mask2former:{mask2former}", "siglip:{siglip}"),
]


def _spec(template, hf):
    return None if template is None else template.format(**{k: str(v) for k, v in hf.items()})


@pytest.fixture(
    scope="module",
    params=COMBOS,
    ids=lambda c: f"masks={c[0] or 'native'}|embed={c[1] or '-'}".replace("{", "").replace("}", ""),
)
def composed(request, hf, tiny_model_dir):
    masks, embed = request.param
    return omniseg.load(tiny_model_dir, masks=_spec(masks, hf), embed=_spec(embed, hf))


def test_regions_contract(composed, scene):
    image, _ = scene
    assert isinstance(composed.source, ComposedSource)
    regions = composed.regions(image)
    assert isinstance(regions, Regions) and len(regions) >= 1
    assert regions.image_size == image.shape[:2]
    assert float(regions.masks.min()) >= 0 and float(regions.masks.max()) <= 1
    assert torch.allclose(regions.embeddings.norm(dim=1), torch.ones(len(regions)), atol=1e-4)
    assert regions.dim == composed.text_encoder.dim
    assert regions.pixel_features is not None and regions.pixel_features.shape[-2:] == regions.masks.shape[-2:]


@pytest.mark.parametrize("task", ["semantic", "instance", "panoptic"])
def test_segment_tasks(composed, scene, task):
    image, _ = scene
    result = composed.segment(image, classes=TINY_CLASSES, task=task, threshold=0.0 if task != "semantic" else None)
    kind = {"semantic": SemanticResult, "instance": InstanceResult, "panoptic": PanopticResult}[task]
    assert isinstance(result, kind)
    assert result.classes == TINY_CLASSES
    if task == "semantic":
        assert result.label_map.shape == image.shape[:2]


def test_refer_click_incontext_video(composed, scene):
    image, ids = scene
    ref = refer(composed, image, "the red car on the left")
    assert ref.mask.shape == image.shape[:2] and ref.mask.dtype == bool
    ys, xs = np.nonzero(ids)
    clicked = click(composed, image, [(float(xs.mean()), float(ys.mean()))], classes=TINY_CLASSES)
    assert clicked.mask.shape == image.shape[:2] and clicked.label in TINY_CLASSES
    (label,) = incontext(composed, [(image, ids)], [image])
    assert label.shape == image.shape[:2] and set(np.unique(label)) <= {0, 1}
    frames = [image, np.roll(image, 2, axis=1), np.roll(image, 4, axis=1)]
    labels = list(video(composed, frames, ids))
    assert len(labels) == 3 and all(lab.shape == image.shape[:2] for lab in labels)


# ------------------------------------------------------------------------------------ CLIP/SigLIP
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_text_tower_is_a_cached_text_encoder(hf, kind):
    from omniseg.backends.clip import ClipBackend

    backend = ClipBackend(hf[kind], kind=kind)
    a = backend.encode(["car", "red car", "sky"])
    assert a.shape == (3, backend.dim) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert not np.allclose(a[0], a[2])
    assert np.allclose(backend.encode(["sky"])[0], a[2], atol=1e-6)  # from the cache, same vector
    assert backend.temperature > 0


def test_siglip_dense_features_are_the_pooling_head_on_one_patch(hf):
    """On a single patch the head's attention is one-hot: its output must equal our per-patch value path."""
    from omniseg.backends.clip import ClipBackend

    backend = ClipBackend(hf["siglip"], kind="siglip")
    x = torch.rand(1, 3, backend.patch, backend.patch)
    with torch.inference_mode():
        vision = backend.model.vision_model
        pooled = vision(pixel_values=x, interpolate_pos_encoding=True).pooler_output
        dense = backend._dense_tokens(x)
    assert dense.shape == (1, 1, pooled.shape[-1])
    assert torch.allclose(dense[:, 0], pooled, atol=1e-5)


def test_clip_region_embeddings_live_in_clip_text_space(hf, tiny_model_dir, scene):
    seg = omniseg.load(tiny_model_dir, embed=f"clip:{hf['clip']}")
    regions = seg.regions(scene[0])
    vocab = seg.vocabulary(TINY_CLASSES)
    assert vocab.embeddings.shape[1] == regions.dim == seg.text_encoder.dim == 16


# -------------------------------------------------------------------------------------------- SAM
def test_sam_everything_mode_gives_distinct_masks(hf, scene):
    from omniseg.backends.sam import SamBackend
    from omniseg.masks import mask_nms

    sam = SamBackend(hf["sam"], points_per_side=4, pred_iou_threshold=0.0, stability_threshold=0.0)
    proposals = sam.propose(scene[0])
    n = proposals.masks.shape[0]
    assert 1 <= n <= 16 * 3 and proposals.scores.shape == (n,)
    binary = proposals.masks > 0.5
    assert len(mask_nms(binary, proposals.scores, 0.7, 100)) == n  # NMS already applied: nothing more to drop


def test_mask_nms_drops_duplicates():
    from omniseg.masks import mask_nms

    a = torch.zeros(3, 8, 8, dtype=torch.bool)
    a[0, :4] = True
    a[1, :4] = True  # duplicate of 0, lower score
    a[2, 4:] = True
    assert mask_nms(a, torch.tensor([0.9, 0.8, 0.5]), 0.7, 10) == [0, 2]
    assert mask_nms(a, torch.tensor([0.9, 0.8, 0.5]), 0.7, 1) == [0]


def test_sam_answers_clicks_and_boxes_itself(hf, tiny_model_dir, scene):
    image, _ = scene
    seg = omniseg.load(tiny_model_dir, masks=f"sam:{hf['sam']}")
    from omniseg.tasks.interactive import Click

    prompted = seg.prompt_regions(image, [Click(30, 40), Click(5, 5, False)], [(10, 20, 50, 60)])
    assert len(prompted) == 3  # SAM's three candidates for the one box (+ clicks)
    result = click(seg, image, [(30, 40)], boxes=[(10, 20, 50, 60)])
    assert not result.mask[:, :10].any() and not result.mask[:20].any()  # clipped to the box
    with pytest.raises(InputError):
        click(seg, image, [(500, 500)])


# ------------------------------------------------------------------------------ Mask2Former/OneFormer
def test_clean_label():
    from omniseg.backends.mask2former import clean_label

    assert clean_label("wall-other-merged") == ["wall"]
    assert clean_label("building, edifice") == ["building", "edifice"]
    assert clean_label("traffic_light") == ["traffic light"]


class OneHotEncoder:
    """Each known word is its own axis: cosine to a mixture of labels is that label's weight."""

    encoder_id = "one-hot"
    words = ["sky", "road", "car", "wall", "person"]
    dim = len(words)

    def encode(self, texts):
        return np.stack([np.eye(self.dim, dtype=np.float32)[self.words.index(t)] for t in texts])


@pytest.mark.parametrize("kind", ["mask2former", "oneformer"])
def test_labels_map_into_a_vocabulary_by_name(hf, scene, kind):
    from omniseg.backends.mask2former import UniversalSegmentationBackend
    from omniseg.tasks.semantic import region_class_similarity
    from omniseg.vocab import Vocabulary

    backend = UniversalSegmentationBackend(hf[kind], OneHotEncoder(), kind=kind, max_size=64)
    assert backend.label_vocabulary().classes == ["sky", "road", "car", "wall"]
    proposals = backend.propose(scene[0])
    vocab = Vocabulary.from_names(["car", "sky", "person"]).embed(OneHotEncoder())
    regions = Regions(proposals.masks, proposals.embeddings, proposals.scores, scene[0].shape[:2])
    sim = region_class_similarity(
        regions, torch.from_numpy(vocab.embeddings), torch.from_numpy(vocab.prompt_to_class), len(vocab)
    )
    # the user's "car" and "sky" score each query by its probability of the model's "car"/"sky" labels;
    # "person" is not a label of this model: zero
    probs = proposals.embeddings  # one-hot encoder: embeddings are the normalised label probabilities
    assert torch.allclose(sim[0], probs[:, 2], atol=1e-5) and torch.allclose(sim[1], probs[:, 0], atol=1e-5)
    assert torch.allclose(sim[2], torch.zeros_like(sim[2]))


# ------------------------------------------------------------------------------------------ SegGPT
@pytest.mark.parametrize("level", ["category", "instance"])
def test_seggpt_incontext_with_feature_ensemble(hf, scene, level):
    from omniseg.backends.seggpt import SegGptBackend, palette

    image, ids = scene
    seggpt = SegGptBackend(hf["seggpt"])
    one = seggpt.incontext([(image, ids)], [image], level=level)
    two = seggpt.incontext([(image, ids), (np.flipud(image).copy(), np.flipud(ids).copy())], [image], level=level)
    for labels in (one, two):
        assert labels[0].shape == image.shape[:2] and labels[0].dtype == np.uint8
        assert set(np.unique(labels[0])) <= {0, 1}
    colours = palette(20)
    assert colours.shape == (21, 3) and torch.equal(colours[0], torch.zeros(3))
    assert len({tuple(c.tolist()) for c in colours}) == 21
    with pytest.raises(InputError):
        seggpt.incontext([(image, np.zeros_like(ids))], [image])


def test_seggpt_video_uses_previous_frames_as_examples(hf, scene, monkeypatch):
    from omniseg.backends.seggpt import SegGptBackend

    image, ids = scene
    seggpt = SegGptBackend(hf["seggpt"])
    seen = []
    real = seggpt.incontext
    monkeypatch.setattr(seggpt, "incontext", lambda ex, t, **k: seen.append(len(ex)) or real(ex, t, **k))
    frames = [np.roll(image, 2 * i, axis=1) for i in range(5)]
    labels = list(seggpt.video(frames, ids, context=2))
    assert len(labels) == 5 and np.array_equal(labels[0], ids)
    assert all(lab.shape == image.shape[:2] and set(np.unique(lab)) <= {0, 1} for lab in labels)
    assert seen == [1, 2, 3, 3]  # the first frame + at most 2 previous frames with their predictions


# ------------------------------------------------------------------------------ specs and errors
def test_parse_spec():
    assert parse_spec("sam:/x/y") == ("sam", "/x/y")
    assert parse_spec("CLIP:openai/clip-vit-base-patch32") == ("clip", "openai/clip-vit-base-patch32")
    assert parse_spec("native") == ("native", None)
    with pytest.raises(InputError):
        parse_spec("dino:/x")
    with pytest.raises(InputError):
        parse_spec("sam")


def test_missing_checkpoints_say_what_was_looked_for(tmp_path, monkeypatch):
    from omniseg.backends.hub import load_model, resolve_checkpoint

    with pytest.raises(MissingResourceError, match="no directory"):
        resolve_checkpoint(tmp_path / "nope", "SAM")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(MissingResourceError, match="HF_HUB_OFFLINE=0") as err:
        resolve_checkpoint("facebook/sam-vit-base", "SAM")
    assert "facebook/sam-vit-base" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingResourceError, match="config.json"):
        resolve_checkpoint(tmp_path / "empty", "CLIP")
    (tmp_path / "empty" / "config.json").write_text("{}")
    from transformers import SamModel

    with pytest.raises(MissingResourceError, match="safetensors"):
        load_model(SamModel, tmp_path / "empty", "SAM")


def test_embed_kind_without_its_masks_is_an_input_error(hf, tiny_model_dir):
    with pytest.raises(InputError):
        omniseg.load(tiny_model_dir, masks=f"sam:{hf['sam']}", embed=f"mask2former:{hf['mask2former']}")


def test_image_file_and_pil_inputs(hf, tiny_model_dir, scene, tmp_path):
    seg = omniseg.load(tiny_model_dir, embed=f"siglip:{hf['siglip']}")
    path = tmp_path / "scene.png"
    Image.fromarray(scene[0]).save(path)
    a = seg.segment(path, classes=TINY_CLASSES).label_map
    b = seg.segment(Image.open(path), classes=TINY_CLASSES).label_map
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def scene_files(tmp_path_factory, scene):
    d = tmp_path_factory.mktemp("backend-cli")
    image, ids = scene
    Image.fromarray(image).save(d / "street.png")
    Image.fromarray(ids).save(d / "street_ids.png")
    frames = d / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(image, 2 * i, axis=1)).save(frames / f"{i:03d}.png")
    return d


def test_cli_segment_composes_masks_and_embeddings(hf, tiny_model_dir, scene_files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", scene_files / "street.png", "--classes", "sky,road,car", "--out", out, "--model", tiny_model_dir]
    code, stdout, err = _run([*argv, "--masks", f"sam:{hf['sam']}", "--embed", f"clip:{hf['clip']}"], capsys)
    assert code == 0, err
    assert (out / "street.png").is_file() and "masks=sam:" in (out / "street.json").read_text()
    code, _, err = _run([*argv, "--task", "panoptic", "--embed", f"siglip:{hf['siglip']}"], capsys)
    assert code == 0, err
    assert (out / "street_panoptic.png").is_file()


def test_cli_segment_with_mask2former_labels_needs_no_classes(hf, scene_files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(
        ["segment", scene_files / "street.png", "--out", out, "--masks", f"oneformer:{hf['oneformer']}"], capsys
    )
    assert code == 0, err
    import json

    assert json.loads((out / "street.json").read_text())["classes"] == ["sky", "road", "car", "wall"]


def test_cli_click_refer_video_incontext_with_backends(hf, tiny_model_dir, scene_files, tmp_path, capsys):
    sam, clip = f"sam:{hf['sam']}", f"clip:{hf['clip']}"
    common = ["--model", tiny_model_dir, "--out", tmp_path / "out", "--quiet"]
    street = scene_files / "street.png"
    assert _run(["click", street, "--point", "30,40", "--box", "10,20,60,60", "--masks", sam, *common], capsys)[0] == 0
    assert _run(["refer", street, "the car", "--embed", clip, *common], capsys)[0] == 0
    ids = scene_files / "street_ids.png"
    code, _, err = _run(
        ["video", scene_files / "frames", "--first-mask", ids, "--masks", sam, "--embed", clip, *common], capsys
    )
    assert code == 0, err
    code, _, err = _run(["incontext", "--example", street, ids, street, "--embed", clip, *common], capsys)
    assert code == 0, err


def test_cli_incontext_with_seggpt(hf, scene_files, tmp_path, capsys):
    street, ids = scene_files / "street.png", scene_files / "street_ids.png"
    out = tmp_path / "out"
    code, stdout, err = _run(
        [
            "incontext",
            "--example",
            street,
            ids,
            "--example",
            street,
            ids,
            street,
            "--model",
            f"seggpt:{hf['seggpt']}",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    with Image.open(out / "street.png") as im, Image.open(street) as src:
        assert im.size == src.size
    code, _, err = _run(
        ["video", scene_files / "frames", "--first-mask", ids, "--model", f"seggpt:{hf['seggpt']}", "--out", out],
        capsys,
    )
    assert code == 0, err
    assert (out / "002.png").is_file()


@pytest.mark.parametrize(
    "extra",
    [
        ["--masks", "sam:/no/such/dir"],
        ["--embed", "clip:openai/clip-vit-base-patch32"],
        ["--masks", "mask2former:facebook/mask2former-swin-tiny-coco-panoptic"],
        ["--embed", "dino:/x"],
        ["--masks", "sam"],
    ],
)
def test_cli_missing_or_bad_backend_is_one_line_exit_2(extra, scene_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    code, _, err = _run(["segment", scene_files / "street.png", "--classes", "a,b", "--out", tmp_path, *extra], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omniseg: error:") and "Traceback" not in err
    spec = extra[1].partition(":")[2]
    if spec:
        assert spec in lines[0]  # names what it looked for


def test_cli_incontext_missing_seggpt_is_one_line(scene_files, tmp_path, capsys):
    street, ids = scene_files / "street.png", scene_files / "street_ids.png"
    code, _, err = _run(
        ["incontext", "--example", street, ids, street, "--model", "seggpt:BAAI/seggpt-vit-large", "--out", tmp_path],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "BAAI/seggpt-vit-large" in err
