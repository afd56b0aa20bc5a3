"""More than 256 names with SAM 3 (issue 16): a cheap per-image score, then the decoder on the top k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omniseg.backends.sam3 import Sam3Backend
from omniseg.backends.sam3_shortlist import fusion_affinity, segment_many, shortlist
from omniseg.errors import InputError

WORDS = ["car", "sky", "road", "tree", "person", "bike", "dog", "cat", "house", "wall"]
VOCAB = [f"{a} {b}" for a in WORDS for b in WORDS[:6]][:300] + [f"thing {i}" for i in range(240)]  # 300 names


@pytest.fixture(scope="module")
def backend(tiny_sam3_dir):
    return Sam3Backend(tiny_sam3_dir, prompt_batch=32, threshold=0.0)


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(1).random((40, 48, 3)) * 255).astype(np.uint8)


def test_shortlist_keeps_the_best_in_vocabulary_order():
    assert shortlist(torch.tensor([0.1, 0.9, 0.5, 0.9, -1.0]), 3) == [1, 2, 3]
    assert shortlist(torch.tensor([0.1, 0.2]), 5) == [0, 1]
    with pytest.raises(InputError):
        shortlist(torch.tensor([0.1]), 0)


def test_affinity_is_the_first_fusion_layers_attention_logit(backend, image):
    """The score of one name equals the cross-attention logits the layer itself would compute
    (its own q/k projections and scaling), averaged over heads and valid tokens, max over the image."""
    encoding = backend.encode_image(image)
    names = VOCAB[:5]
    scores = fusion_affinity(backend, encoding, names, chunk=2)
    layer = backend.model.detr_encoder.layers[0]
    att = layer.cross_attn
    image_tokens = encoding.fpn_hidden_states[-2][0].flatten(1).T
    with torch.inference_mode():
        q = att.q_proj(layer.layer_norm2(image_tokens)).view(-1, att.num_attention_heads, att.head_dim)
        for i, prompt in enumerate(backend.text_prompts(names)):
            k = att.k_proj(prompt.tokens[prompt.mask]).view(-1, att.num_attention_heads, att.head_dim)
            logits = torch.einsum("nhd,lhd->nlh", q, k) * att.scaling  # [hw, L, H]
            assert torch.isclose(scores[i], logits.mean(dim=(1, 2)).max(), atol=1e-5)
    assert scores.std() > 0


def test_segment_many_decodes_only_the_shortlist(backend, image, monkeypatch):
    assert len(VOCAB) == 300
    encoding = backend.encode_image(image)
    decoded: list[int] = []
    real = backend.decode
    monkeypatch.setattr(
        backend, "decode", lambda enc, prompts, *a: decoded.append(len(prompts)) or real(enc, prompts, *a)
    )
    found = segment_many(backend, encoding, VOCAB, k=40)
    assert sum(decoded) == 40  # 300 names scored, 40 decoded
    keep = shortlist(fusion_affinity(backend, encoding, VOCAB), 40)
    assert set(found.labels.tolist()) == set(keep)  # threshold 0: every query of every shortlisted name
    # the same instances as decoding the shortlisted names directly, labels mapped back to the vocabulary
    direct = backend.segment(encoding, [VOCAB[i] for i in keep])
    assert torch.equal(found.labels, torch.tensor(keep)[direct.labels])
    assert torch.allclose(found.scores, direct.scores, atol=1e-5)
    # a custom scorer: names 7 and 250 are the only ones decoded
    custom = torch.zeros(len(VOCAB))
    custom[[7, 250]] = 1
    found = segment_many(backend, encoding, VOCAB, k=2, scorer=lambda enc, names: custom)
    assert set(found.labels.tolist()) == {7, 250}
    # k >= the vocabulary: no shortlist, every name
    small = segment_many(backend, encoding, VOCAB[:3], k=64)
    assert set(small.labels.tolist()) == {0, 1, 2}
    with pytest.raises(InputError):
        segment_many(backend, encoding, VOCAB, k=2, scorer=lambda enc, names: torch.zeros(3))
