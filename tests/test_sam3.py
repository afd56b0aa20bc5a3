"""SAM 3 concept segmentation (issue 16) on a tiny random Sam3Model built here: omniseg's torch
pre/post-processing and batched decoding against transformers' own model and post-processing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
import tiny_hf16
from omniseg.backends.sam3 import Instances, Sam3Backend
from omniseg.backends.sam3_processing import ImageSpec, preprocess_image
from omniseg.errors import InputError, MissingResourceError
from transformers_reference import mask_iou, middle_threshold, reference

NAMES = ["car", "sky", "red car", "road", "a tree", "person on a bike"]


@pytest.fixture(scope="module")
def backend(tiny_sam3_dir):
    return Sam3Backend(tiny_sam3_dir, threshold=0.0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    a = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    b = np.zeros((50, 38, 3), np.uint8)
    b[:, :19] = (200, 30, 30)
    b[10:40, 19:] = (20, 160, 40)
    b += (rng.random(b.shape) * 40).astype(np.uint8)
    return a, b


def assert_same(ours: Instances, label: int, ref: dict) -> None:
    pick = ours.labels == label
    assert int(pick.sum()) == len(ref["scores"])
    assert torch.allclose(ours.scores[pick], ref["scores"], atol=1e-3)
    assert torch.allclose(ours.boxes[pick], ref["boxes"], atol=1e-2)
    for mine, theirs in zip(ours.masks[pick], ref["masks"].bool(), strict=True):
        assert mask_iou(mine, theirs) >= 0.99


# --------------------------------------------------------------------------------- preprocessing
def test_preprocessing_is_the_documented_resize_and_normalisation(backend, images):
    """Resize to 56 x 56 bilinear with antialiasing (PIL's BILINEAR is the reference resampler of the
    processor's PIL backend), rescale 1/255, normalise with mean = std = 0.5."""
    for image in images:
        ours = preprocess_image(image, backend.image_spec, torch.device("cpu"))
        pil = np.asarray(Image.fromarray(image).resize((56, 56), Image.BILINEAR), dtype=np.float32)
        expected = torch.from_numpy((pil / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
        assert ours.shape == (1, 3, 56, 56)
        assert float((ours - expected).abs().max()) <= 2 * (1 / 127.5) + 1e-6  # within one uint8 level (+rounding)
        assert float((ours - expected).abs().mean()) < 0.01


def test_image_spec_reads_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"size": {"height": 64, "width": 48}, "image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1]}'
    )
    spec = ImageSpec.from_checkpoint(tmp_path, 1008)
    assert spec.size == (64, 48) and spec.mean == (0.1, 0.2, 0.3)
    assert ImageSpec.from_checkpoint(tmp_path / "none", 1008).size == (1008, 1008)


# ---------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("which", [0, 1])
def test_instances_equal_transformers_pipeline(backend, images, which):
    image = images[which]
    all_scores = backend.segment(image, NAMES, threshold=0.0).scores
    threshold = middle_threshold(all_scores)
    ours = backend.segment(image, NAMES, threshold=threshold)
    assert 0 < len(ours) < len(all_scores)  # the threshold keeps some and drops some
    assert ours.masks.dtype == torch.bool and ours.masks.shape[1:] == image.shape[:2]
    assert ours.masks.any() and not ours.masks.all()
    per_class = ours.class_scores(len(NAMES))
    assert per_class.shape == (len(ours), len(NAMES)) and torch.equal(per_class.argmax(1), ours.labels)
    assert torch.equal(per_class.sum(1), ours.scores)
    for label, name in enumerate(NAMES):
        assert_same(ours, label, reference(backend, image, name, threshold))


def test_batched_prompts_equal_one_by_one(tiny_sam3_dir, images):
    batched = Sam3Backend(tiny_sam3_dir, prompt_batch=4, threshold=0.0)
    single = Sam3Backend(tiny_sam3_dir, prompt_batch=1, threshold=0.0)
    image = images[1]
    threshold = middle_threshold(single.segment(image, NAMES).scores)
    a, b = batched.segment(image, NAMES, threshold=threshold), single.segment(image, NAMES, threshold=threshold)
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.scores, b.scores, atol=1e-4)
    assert all(mask_iou(x, y) >= 0.99 for x, y in zip(a.masks, b.masks, strict=True))


def test_mask_head_only_for_prompts_with_a_detection(backend, images, monkeypatch):
    """Scores first, then the mask head only for prompts with a query above the threshold: the same
    instances as computing every prompt's masks (decode with threshold None)."""
    image = images[0]
    encoding = backend.encode_image(image)
    prompts = backend.text_prompts(NAMES)
    full = backend.decode(encoding, prompts)
    scores = (full.pred_logits.sigmoid() * full.presence_logits.sigmoid()).amax(-1)  # best query per prompt
    threshold = float(scores.sort().values[1:3].mean())  # 4 of the 6 prompts have a detection above it
    heads = []
    real = backend.model.mask_decoder.forward
    monkeypatch.setattr(
        backend.model.mask_decoder, "forward", lambda **k: heads.append(len(k["decoder_queries"])) or real(**k)
    )
    skipped = backend.decode(encoding, prompts, threshold)
    assert heads == [4]
    a = backend.instances(full, encoding.image_size, range(6), threshold)
    b = backend.instances(skipped, encoding.image_size, range(6), threshold)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks) and torch.allclose(a.scores, b.scores)
    assert backend.decode(encoding, prompts, 1.0).pred_masks is None  # nothing can score above 1


def test_image_encoded_once_and_texts_cached(tiny_sam3_dir, images, monkeypatch):
    backend = Sam3Backend(tiny_sam3_dir, prompt_batch=4)
    calls = {"vision": 0, "text": 0, "decode": 0}
    for name, attr in (("vision", "get_vision_features"), ("text", "get_text_features")):
        real = getattr(backend.model, attr)
        monkeypatch.setattr(
            backend.model, attr, lambda *a, _r=real, _n=name, **k: calls.__setitem__(_n, calls[_n] + 1) or _r(*a, **k)
        )
    real_decode = backend.decode
    monkeypatch.setattr(
        backend, "decode", lambda *a, **k: calls.__setitem__("decode", calls["decode"] + 1) or real_decode(*a, **k)
    )
    backend.segment(images[0], NAMES)
    assert calls == {"vision": 1, "text": 1, "decode": 2}  # 6 prompts in batches of 4
    encoding = backend.encode_image(images[1])
    backend.segment(encoding, NAMES[:3])
    backend.segment(encoding, NAMES[3:])
    assert calls == {"vision": 2, "text": 1, "decode": 4}  # texts from the cache, the encoding reused


# ------------------------------------------------------------------------------------- exemplars
def test_box_exemplar_equals_sam3_box_prompt(backend, images):
    """SAM 3's own box prompt: our geometry tokens decoded == Sam3Model(input_boxes=...) + its post-processing,
    with text or "visual", one positive box, or a positive and a negative box."""
    image = images[1]
    h, w = image.shape[:2]
    encoding = backend.encode_image(image)
    cases = [("visual", [(2.0, 8.0, 20.0, 45.0)], [True]), ("car", [(2.0, 8.0, 20.0, 45.0)], [True])]
    cases.append(("visual", [(2.0, 8.0, 20.0, 45.0), (22.0, 12.0, 37.0, 38.0)], [True, False]))
    for text, boxes, positive in cases:
        prompt = backend.box_prompt(encoding, boxes, positive, text=text)
        scores = backend.run(encoding, [prompt], threshold=0.0).scores
        threshold = middle_threshold(scores)
        ours = backend.run(encoding, [prompt], threshold=threshold)
        cxcywh = torch.tensor(
            [[[(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h] for x0, y0, x1, y1 in boxes]]
        )
        labels = torch.tensor([[int(p) for p in positive]])
        ref = reference(backend, image, text, threshold, input_boxes=cxcywh, input_boxes_labels=labels)
        assert_same(ours, 0, ref)


def test_exemplar_from_another_image(backend, images):
    """The example's tokens come from its own image: the same box on a different example image gives
    a different prompt, and the target's answer depends on the example image, not only on the box."""
    target, example = images
    mask = np.zeros(example.shape[:2], bool)
    mask[10:40, 19:] = True  # the green block
    from_example = backend.segment_with_exemplars(target, [(example, mask)], threshold=0.0)
    assert len(from_example) == 8 and set(from_example.labels.tolist()) == {0}  # 8 queries, all kept at 0
    other = np.ascontiguousarray(example[:, ::-1])
    from_other = backend.segment_with_exemplars(target, [(other, mask)], threshold=0.0)
    assert not torch.allclose(from_example.scores, from_other.scores)
    # several examples: one prompt each, decoded together against the one target encoding
    both = backend.segment_with_exemplars(target, [(example, mask), (other, mask)], threshold=0.0)
    assert torch.allclose(both.scores[both.labels == 0], from_example.scores, atol=1e-4)
    assert torch.allclose(both.scores[both.labels == 1], from_other.scores, atol=1e-4)
    with pytest.raises(InputError, match="empty"):
        backend.segment_with_exemplars(target, [(example, np.zeros_like(mask))])
    with pytest.raises(InputError, match="does not match"):
        backend.segment_with_exemplars(target, [(example, mask[:-1])])


def test_fewshot_evaluator_runs_on_exemplars_from_other_images(backend, images):
    """omniseg.eval.fewshot's FewShotScores over episodes whose supports are other images: finite mIoU
    (random weights: the value means nothing; this proves the plumbing)."""
    from omniseg.eval.fewshot import FewShotScores

    target, example = images
    support = np.zeros(example.shape[:2], bool)
    support[10:40, 19:] = True
    query_gt = np.zeros(target.shape[:2], bool)
    query_gt[5:30, 10:40] = True
    scores = FewShotScores(num_classes=2)
    for shots in ([(example, support)], [(example, support), (np.ascontiguousarray(example[::-1]), support[::-1])]):
        pred = backend.incontext_mask(target, shots, threshold=0.25)
        assert pred.shape == target.shape[:2] and pred.dtype == bool
        scores.update(1, pred, query_gt)
    assert scores.episodes[1] == 2 and 0.0 <= scores.miou() <= 1.0


def test_loads_the_detector_of_a_combined_sam3_checkpoint(tmp_path, images):
    """facebook/sam3 is one checkpoint for detector and tracker (model_type sam3_video): the adapter must
    load the detector's own weights from it (none re-initialised) and segment with them."""
    from transformers import Sam3VideoModel

    with torch.random.fork_rng():
        directory = tiny_hf16.make_sam3_combined(tmp_path / "combined")
    backend = Sam3Backend(directory, threshold=0.0)
    saved = Sam3VideoModel.from_pretrained(directory).detector_model.state_dict()
    loaded = backend.model.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert len(backend.segment(images[0], ["car"])) == 8


# ---------------------------------------------------------------------------------------- errors
def test_bad_inputs_are_one_line_errors(tiny_sam3_dir, backend, images, tmp_path, monkeypatch):
    with pytest.raises(InputError):
        backend.segment(images[0], [])
    with pytest.raises(InputError):
        backend.segment(images[0], ["car", " "])
    with pytest.raises(InputError, match="unknown device"):
        Sam3Backend(tiny_sam3_dir, device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available") as err:
            Sam3Backend(tiny_sam3_dir, device="cuda")
        assert "\n" not in str(err.value)
    with pytest.raises(MissingResourceError, match="no directory"):
        Sam3Backend(tmp_path / "nope")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_sam3_dir / "config.json").read_text())
    with pytest.raises(MissingResourceError, match="safetensors"):
        Sam3Backend(partial)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(MissingResourceError, match="facebook/sam3") as err:
        Sam3Backend("facebook/sam3")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- RoI Align
def test_roi_align_matches_torchvision_semantics_on_a_linear_ramp():
    """Bilinear sampling of a linear map is exact, so every output bin is the map at the bin's centre
    (torchvision aligned=False: box corners in pixel coordinates, samples at bin subdivisions' centres)."""
    from omniseg.backends.roi_align import roi_align

    h, w = 12, 16
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    features = torch.stack([2 * xs + 3 * ys + 1, -xs])[None]  # [1,2,H,W]
    box = torch.tensor([[2.0, 3.0, 10.0, 9.0]])  # x0, y0, x1, y1
    out = roi_align(features, [box], 2)
    assert out.shape == (1, 2, 2, 2)
    cx = torch.tensor([2 + 2.0, 2 + 6.0])  # bin centres: x0 + (i + 0.5) * 8 / 2
    cy = torch.tensor([3 + 1.5, 3 + 4.5])
    expected = 2 * cx[None] + 3 * cy[:, None] + 1
    assert torch.allclose(out[0, 0], expected, atol=1e-5) and torch.allclose(out[0, 1], -cx[None].expand(2, 2))
    # outside the map (beyond -1) samples are zero; two images, boxes per image
    far = roi_align(torch.cat([features, features]), [box, torch.tensor([[-30.0, -30.0, -20.0, -20.0]])], (1, 1))
    assert far.shape == (2, 2, 1, 1) and float(far[1].abs().max()) == 0.0


def test_roi_align_installs_in_a_fresh_process():
    """install_for_sam3 before anything imported SAM 3's modeling (the benchmark, a Ray worker): the
    package's lazy attribute would be a placeholder without torchvision; the module itself is patched."""
    code = (
        "import sys\n"
        "from omniseg.backends.roi_align import install_for_sam3, roi_align\n"
        "install_for_sam3()\n"
        "module = sys.modules['transformers.models.sam3.modeling_sam3']\n"
        "assert module.torchvision.ops.roi_align is not None\n"
        "print(module.torchvision.ops.roi_align is roi_align)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(omniseg.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(importlib.util.find_spec("torchvision") is None)
