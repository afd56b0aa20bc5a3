"""The frozen recognizer (issue 15): WordNet -> ImageNet covers, the frozen head, fusion, "unknown"."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import omniseg
from omniseg.models.backbone import load_pretrained_backbone
from omniseg.models.openseg import OpenSegConfig, OpenSegModel
from omniseg.recognition.concepts import TABLE_PATH, ConceptMapper, ConceptTable, imagenet_names
from omniseg.recognition.fusion import (
    FusionConfig,
    RecognizerFusion,
    covered_pixel_probability,
    fuse_region_scores,
    unseen_factor,
)
from omniseg.recognition.recognizer import FrozenImageNetHead
from omniseg.regions import Regions
from omniseg.tasks.instance import classify_regions
from omniseg.train.losses import distillation_loss
from omniseg.vocab import Vocabulary

skimage_data = pytest.importorskip("skimage.data")
NAMES = imagenet_names()


def idx(name: str) -> int:
    return NAMES.index(name)


# ------------------------------------------------------------------------------------- WordNet covers
@pytest.fixture(scope="module")
def table() -> ConceptTable:
    return ConceptTable()


def test_a_name_covers_the_imagenet_classes_below_it_in_wordnet(table):
    dog = table.lookup("dog")
    assert dog is not None and len(dog) >= 100  # the dog breeds
    assert idx("Chihuahua") in dog and idx("tabby cat") not in dog
    assert idx("jeans") in table.lookup("jeans")  # plural -> WordNet's "jean"
    assert idx("jeans") in table.lookup("pants")  # "pants" is bloomers, its base form "pant" trousers
    assert idx("taxicab") in table.lookup("red car")  # the last words when the whole name is unknown


def test_known_nouns_without_imagenet_classes_and_unknown_names_differ(table):
    assert table.lookup("sky") == {}  # a visual noun ImageNet has no class for: the trained score alone
    assert table.lookup("xqzzyv") is None  # not in WordNet: the text fallback may try


def test_a_noun_without_classes_borrows_its_parents_at_half_weight(table):
    sneakers = table.lookup("sneakers")
    assert sneakers and set(sneakers.values()) == {0.5} and idx("sandal") in sneakers


def test_text_fallback_only_for_names_wordnet_does_not_know(text_encoder):
    mapper = ConceptMapper(text_encoder, min_cosine=0.8)
    assert mapper.classes_of("water") == {}  # known: never "water bottle" by text similarity
    assert set(mapper.classes_of("Windsor necktie")) >= {idx("Windsor tie")}  # WordNet: "necktie"
    cover = mapper.cover_matrix([["sky"], ["dog", "puppy"]])
    assert cover.shape == (2, 1000) and cover[0].sum() == 0 and cover[1, idx("Chihuahua")] == 1.0


@pytest.fixture(scope="module")
def build_table():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_imagenet_concepts.py"
    spec = importlib.util.spec_from_file_location("make_imagenet_concepts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_cover_table_is_up_to_date(build_table):
    from omniseg.recognition.wordnet import WordNet

    wnids = [line.strip() for line in build_table.WNIDS.read_text().splitlines() if line.startswith("n")]
    assert len(wnids) == 1000 and wnids[0] == "n01440764"
    assert build_table.build(WordNet(), wnids) == json.loads(TABLE_PATH.read_text())


# --------------------------------------------------------------------------------------- frozen head
@pytest.fixture(scope="module")
def backbone():
    return load_pretrained_backbone().eval()


def _preprocess(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    return (x - 127 / 255) / (128 / 255)


@torch.inference_mode()
def test_a_whole_image_mask_gives_the_pretrained_classifier(backbone):
    x = _preprocess(skimage_data.chelsea())
    head = FrozenImageNetHead(backbone, first=11)
    h = torch.nn.functional.relu6(backbone._bn0(backbone._conv_stem(x)))
    for block in backbone._blocks[:11]:
        h = block(h)
    features = head.head_features(h)
    whole = torch.ones(1, 1, *(8 * n for n in features.shape[-2:]))  # a full mask on the stride-4 grid
    logits = head.region_logits(features, whole)[0, 0]
    torch.testing.assert_close(logits, backbone.classify(x)[0], rtol=1e-4, atol=1e-4)
    assert NAMES[int(logits.argmax())] in {"tabby cat", "tiger cat", "Egyptian Mau"}
    # the class activation map averages to the same logits
    torch.testing.assert_close(head.pixel_logits(features)[0].mean((1, 2)), logits, rtol=1e-4, atol=1e-4)


def test_the_recognizer_is_never_trained_nor_saved(tmp_path):
    torch.manual_seed(0)
    model = OpenSegModel(OpenSegConfig(num_queries=4, feature_dim=32, fpn_dim=32, ffn_dim=64, num_heads=2))
    assert model.recognizer is not None
    assert not any(p.requires_grad for p in model.recognizer.parameters())
    before = {k: v.clone() for k, v in model.recognizer.state_dict().items()}
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    out = model(torch.rand(2, 3, 64, 64))
    assert out["imagenet_logits"].shape == (2, 4, 1000) and not out["imagenet_logits"].requires_grad
    (out["embeddings"].sum() + out["mask_logits"].mean()).backward()
    optimizer.step()
    after = model.recognizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert not any(k.startswith("recognizer.") for k in model.trainable_state_dict())


# ------------------------------------------------------------------------------------------- fusion
def test_fusion_adds_the_covered_probability_mass():
    class_sim = torch.tensor([[0.2, 0.1], [0.3, 0.3]])
    cover = torch.zeros(2, 1000)
    cover[0, [3, 4]] = 1.0  # class 0 covers ImageNet 3 and 4; class 1 nothing
    probs = torch.zeros(2, 1000)
    probs[0, 3], probs[0, 4], probs[1, 9] = 0.5, 0.25, 1.0
    fused = fuse_region_scores(class_sim, cover, probs, weight=2.0)
    torch.testing.assert_close(fused, torch.tensor([[0.2 + 2 * 0.75, 0.1], [0.3, 0.3]]))
    logits = torch.full((1000, 2, 2), -10.0)
    logits[3] = 10.0  # every cell is ImageNet class 3
    mass = covered_pixel_probability(cover, logits, (4, 4))
    assert mass.shape == (2, 4, 4) and torch.allclose(mass[0], torch.ones(4, 4), atol=1e-6) and mass[1].max() < 1e-6


def test_seen_names_keep_the_trained_score():
    factors = unseen_factor(np.array([1.0, 0.9, 0.8, 0.7, 0.2]))
    np.testing.assert_allclose(factors, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_recognizer_fusion_weighs_each_class_by_how_unseen_it_is(text_encoder):
    fusion = RecognizerFusion(text_encoder, ["dog", "sky"], FusionConfig())
    vocab = Vocabulary.from_names(["dog", "jeans", "sky"]).embed(text_encoder)
    cover = fusion.class_cover(vocab).numpy()
    assert cover[0].sum() == 0  # "dog" is trained: no frozen weight
    assert cover[1, idx("jeans")] == 1.0  # "jeans" never trained
    assert cover[2].sum() == 0  # "sky": no ImageNet class
    assert fusion.class_cover(vocab) is not None and "recognizer_cover" in vocab.derived  # memoised
    subset = fusion.class_cover(vocab, np.array([1])).numpy()
    np.testing.assert_array_equal(subset[0], cover[1])


def test_distillation_pulls_embeddings_toward_what_the_head_sees():
    text = torch.nn.functional.normalize(torch.randn(1000, 8), dim=-1)
    logits = torch.full((1, 2, 1000), -20.0)
    logits[0, 0, 5] = 20.0  # region 0: the head is sure it is ImageNet class 5
    masks = torch.ones(1, 2, 16)
    aligned = text[5].expand(1, 2, 8).clone()
    assert distillation_loss(aligned, logits, text, masks) < 2e-3  # region 1 is flat: weight 1/1000 of region 0
    opposite = -aligned
    assert distillation_loss(opposite, logits, text, masks) > 1.9


# ---------------------------------------------------------------------------- the door, end to end
@pytest.fixture(scope="module")
def default_segmenter():
    return omniseg.load()


def test_the_recognizer_names_what_the_model_never_trained_on(default_segmenter):
    image = skimage_data.chelsea()  # a tabby cat; "tabby" was never a training name, "cat" was
    fused = default_segmenter.segment(image, classes="tabby, sofa", threshold=0)
    plain_fusion, default_segmenter.fusion = default_segmenter.fusion, None
    try:
        plain = default_segmenter.segment(image, classes="tabby, sofa", threshold=0)
    finally:
        default_segmenter.fusion = plain_fusion
    assert fused.fractions().get("tabby", 0) > max(0.3, plain.fractions().get("tabby", 0))


def test_unknown_is_an_answer(default_segmenter):
    image = skimage_data.astronaut()
    result = default_segmenter.segment(image, classes="polyp")
    assert result.to_json()["unlabeled_fraction"] > 0.8  # not "polyp 100%"
    forced = default_segmenter.segment(image, classes="polyp", threshold=0)
    assert forced.to_json()["unlabeled_fraction"] == 0.0  # threshold 0: every pixel gets a class


def test_refer_says_not_found(default_segmenter):
    image = skimage_data.astronaut()
    missing = default_segmenter.refer(image, "the fire hydrant")
    assert not missing.found and not missing.mask.any() and missing.to_json()["found"] is False
    person = default_segmenter.refer(image, "the woman")
    assert person.found and person.mask.mean() > 0.1


def test_instances_must_beat_background(default_segmenter):
    regions = default_segmenter.regions(skimage_data.astronaut())
    vocab = default_segmenter.vocabulary(["person", "car"])
    prompts, owner = torch.from_numpy(vocab.embeddings), torch.from_numpy(vocab.prompt_to_class)
    plain = classify_regions(regions, prompts, owner, 2)
    checked = classify_regions(regions, prompts, owner, 2, reference=default_segmenter.no_object)
    assert bool((checked.scores <= plain.scores + 1e-6).all()) and bool((checked.scores < plain.scores - 0.1).any())


def test_regions_carry_the_recognizer(default_segmenter):
    regions: Regions = default_segmenter.regions(skimage_data.coffee())
    assert regions.imagenet_probs is not None and regions.imagenet_probs.shape == (len(regions), 1000)
    torch.testing.assert_close(regions.imagenet_probs.sum(1), torch.ones(len(regions)))
    assert regions.imagenet_pixel_logits is not None and regions.imagenet_pixel_logits.shape[0] == 1000


def test_the_frozen_head_proposes_candidates_in_large_vocabularies(default_segmenter):
    from omniseg.vocabularies import synthetic_names

    names = [n for n in synthetic_names(400) if "cat" not in n][:299] + ["house cat"]
    vocab = default_segmenter.vocabulary(names)
    regions = default_segmenter.regions(skimage_data.chelsea())
    assert default_segmenter.fusion is not None
    proposed = default_segmenter.fusion.candidates(vocab, regions)
    assert names.index("house cat") in proposed.tolist()
    result = default_segmenter.segment(skimage_data.chelsea(), classes=vocab)
    assert result.fractions().get("house cat", 0) > 0.2
