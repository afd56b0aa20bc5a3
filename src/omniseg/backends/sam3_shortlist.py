"""More names than SAM 3 should decode: shortlist them per image, then decode the shortlist.

SAM 3's DETR encoder/decoder runs once per prompt (batched, but its cost grows with the number of
prompts), so a vocabulary of thousands of names costs thousands of decoder passes per image. A
cheap image-level score ranks every name first and only the top ``k`` are decoded.

The default score is SAM 3's own first text-image fusion step: the first DETR-encoder layer's
cross-attention logit between each image token (the FPN level the DETR encoder reads) and the
name's mean prompt key, maximised over the image. It costs one projection of the image tokens per
image and one dot product per name and image token (names in chunks), with the text tokens cached.
It approximates the layer's input by the image features before that layer's self-attention: a
cheap proxy, not SAM 3's presence score, and its recall on real checkpoints is unmeasured here (no
real weights offline). Any other ``scorer(encoding, names) -> [P]`` (e.g. CLIP image-text
similarity) can be given instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from omniseg.backends.sam3 import ImageEncoding, Prompt, Sam3Backend
from omniseg.concepts import Instances
from omniseg.errors import InputError
from omniseg.images import ImageLike

Scorer = Callable[[ImageEncoding, Sequence[str]], torch.Tensor]


@torch.inference_mode()
def fusion_affinity(
    backend: Sam3Backend, encoding: ImageEncoding, names: Sequence[str], chunk: int = 256
) -> torch.Tensor:
    """[P] max over image tokens of the first DETR-encoder cross-attention logit to each name."""
    pooled = [pooled_prompts(backend.text_prompts(list(names[s : s + chunk]))) for s in range(0, len(names), chunk)]
    return pooled_affinity(backend, encoding, torch.cat(pooled), chunk)


def pooled_prompts(prompts: Sequence[Prompt]) -> torch.Tensor:
    """[P, D] each prompt's mean valid token: all the shortlist score needs of a name (k_proj is affine,
    so pooling before it equals pooling the keys), so a large vocabulary keeps this, not the tokens."""
    tokens = torch.stack([p.tokens for p in prompts])  # [P,L,D]
    valid = torch.stack([p.mask for p in prompts]).to(tokens.dtype)[..., None]  # [P,L,1]
    return (tokens * valid).sum(1) / valid.sum(1).clamp(min=1)


@torch.inference_mode()
def pooled_affinity(
    backend: Sam3Backend, encoding: ImageEncoding, pooled: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """[P] the fusion affinity of names given by their pooled prompts [P, D] (pooled_prompts)."""
    layer = backend.model.detr_encoder.layers[0]
    attention = layer.cross_attn
    heads, head_dim = attention.num_attention_heads, attention.head_dim
    level = encoding.fpn_hidden_states[-2][0]  # [D,h,w]: the level Sam3Model's DETR encoder reads
    image = level.flatten(1).T  # [hw, D]
    queries = attention.q_proj(layer.layer_norm2(image)).view(-1, heads, head_dim)  # [hw, H, d]
    scores = []
    for start in range(0, len(pooled), chunk):
        keys = attention.k_proj(pooled[start : start + chunk]).view(-1, heads, head_dim)  # [P, H, d]
        logits = torch.einsum("nhd,phd->nph", queries, keys) * attention.scaling
        scores.append(logits.mean(-1).amax(0))
    return torch.cat(scores)


def shortlist(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` best scores, in vocabulary order (ties: the earlier name)."""
    if k < 1:
        raise InputError(f"the shortlist size must be >= 1, got {k}")
    if k >= len(scores):
        return list(range(len(scores)))
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def segment_many(
    backend: Sam3Backend,
    image: ImageLike | ImageEncoding,
    names: Sequence[str],
    k: int = 64,
    scorer: Scorer | None = None,
    threshold: float | None = None,
    mask_threshold: float | None = None,
) -> Instances:
    """SAM 3 instances for a large vocabulary: score every name cheaply, decode the best ``k``.

    Labels index ``names`` (the whole vocabulary), so callers need not know the shortlist.
    """
    names = [str(n).strip() for n in names]
    if not names or any(not n for n in names):
        raise InputError("SAM 3 needs at least one non-empty concept name")
    encoding = image if isinstance(image, ImageEncoding) else backend.encode_image(image)
    if k >= len(names):
        return backend.segment(encoding, names, threshold, mask_threshold)
    score = scorer(encoding, names) if scorer is not None else fusion_affinity(backend, encoding, names)
    if score.shape != (len(names),):
        raise InputError(f"the shortlist scorer gave {tuple(score.shape)} scores for {len(names)} names")
    keep = shortlist(score, k)
    return backend.run(encoding, backend.text_prompts([names[i] for i in keep]), keep, threshold, mask_threshold)
