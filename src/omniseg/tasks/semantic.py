"""Semantic and grounding segmentation, OpenSeg eq. 6.

logits[k, p] = max over class k's prompts of sum_i <w, z_i> s_i(p), argmax over k. Grounding is the
same computation with the vocabulary restricted to the classes the user names for this image.

Large vocabularies (more than DIRECT_MAX_CLASSES classes): each region's TOP_K classes come from
the vocabulary's search index (exact or FAISS, omniseg.search), and eq. 6 runs over the union of
those candidates only, so the per-image cost is N regions x index lookups plus eq. 6 over at most
N x TOP_K classes, whatever the vocabulary size (ESSNet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.recognition.fusion import (
    FusionConfig,
    RecognizerFusion,
    covered_pixel_probability,
    fuse_region_scores,
)
from omniseg.regions import Regions
from omniseg.search import exact_topk

if TYPE_CHECKING:
    from omniseg.search import SearchConfig
    from omniseg.vocab import Vocabulary

# Cosine units per logit of the confidence: a margin of 0.05 over the best other concept = 0.73.
CONFIDENCE_SCALE = 0.05
SAME_CONCEPT_COSINE = 0.7
# The door's default: a pixel is left unlabeled below this confidence, i.e. when another known
# concept beats its class by more than ~0.11 cosine. Tuned with benchmarks/fusion_sweep.py on 40 val
# images each (--thresholds 0.02,0.05,0.1,0.2,0.3): unlabeled share of labelled pixels MSRC 0.4 /
# 0.7 / 0.9 / 1.4 / 2.4 %, mIoU 80.8 -> 80.3 / 79.8 / 79.7 / 79.4 / 78.6; CamVid 0 / 0 / 0.02 / 0.4 /
# 1.0 %, 48.9 -> 48.9 / 48.9 / 48.9 / 48.6 / 48.6. 0 labels every pixel, as eq. 6 alone does.
DEFAULT_SEMANTIC_CONFIDENCE = 0.1
DIRECT_MAX_CLASSES = 256  # up to this many classes eq. 6 runs over all of them
TOP_K = 5  # classes per region taken from the index for larger vocabularies
PRUNE_TOP = 3  # classes upsampled: those among the best PRUNE_TOP of some grid cell


def class_max_over_prompts(sim: torch.Tensor, prompt_to_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """sim [M,...] per prompt -> [K,...] per class, max over each class's prompts (synonym ensembling)."""
    out = sim.new_full((num_classes, *sim.shape[1:]), float("-inf"))
    index = prompt_to_class.view(-1, *([1] * (sim.dim() - 1))).expand_as(sim)
    return out.scatter_reduce(0, index, sim, reduce="amax", include_self=True)


def semantic_logits(masks: torch.Tensor, class_sim: torch.Tensor) -> torch.Tensor:
    """Eq. 6 normalised by mask mass: y[k,p] = sum_i <w_k,z_i> s_i(p) / sum_i s_i(p).

    The normaliser is the same for every class, so argmax_k is exactly eq. 6; dividing makes y a
    weighted mean cosine in [-1, 1], to which a temperature (training) or an "unlabeled" threshold
    (inference) can be applied. masks [N,...], class_sim [K,N] -> [K,...].
    """
    flat = masks.reshape(masks.shape[0], -1)
    y = class_sim @ flat / flat.sum(0, keepdim=True).clamp(min=1e-6)
    return y.reshape(class_sim.shape[0], *masks.shape[1:])


def region_class_similarity(
    regions: Regions,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    num_classes: int,
    class_cover: torch.Tensor | None = None,
    fusion: FusionConfig | None = None,
) -> torch.Tensor:
    """[K, N]: cosine of each region to each class (max over the class's prompts), fused with the
    frozen recognizer's region probabilities when there are a cover and a fusion config
    (omniseg.recognition.fusion)."""
    sim = prompt_embeddings.to(regions.embeddings.dtype) @ regions.embeddings.T  # [M, N]
    class_sim = class_max_over_prompts(sim, prompt_to_class, num_classes)
    if class_cover is not None and fusion is not None and regions.imagenet_probs is not None:
        class_sim = fuse_region_scores(class_sim, class_cover, regions.imagenet_probs, fusion.region_weight)
    return class_sim


UPSAMPLE_BUDGET = 1 << 26  # floats of upsampled logits held at once (256 MB)


def upsampled_max(logits: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """max and argmax over classes of logits [K,h,w] upsampled bilinearly to ``size``.

    A few classes at a time, so a large vocabulary on a large image never holds K x H x W floats;
    the result is the same as upsampling all at once (ties go to the lower class index).
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits.max(dim=0)
    step = max(1, UPSAMPLE_BUDGET // max(1, size[0] * size[1]))
    score = label = None
    for start in range(0, logits.shape[0], step):
        chunk = F.interpolate(logits[None, start : start + step], size=size, mode="bilinear", align_corners=False)[0]
        chunk_score, chunk_label = chunk.max(dim=0)
        if score is None or label is None:
            score, label = chunk_score, chunk_label
        else:
            better = chunk_score > score
            score = torch.where(better, chunk_score, score)
            label = torch.where(better, chunk_label + start, label)
    assert score is not None and label is not None
    return score, label


def semantic_segmentation(
    regions: Regions,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    num_classes: int,
    out_size: tuple[int, int] | None = None,
    threshold: float | None = None,
    class_cover: torch.Tensor | None = None,
    fusion: FusionConfig | None = None,
    reference: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label map [H,W] (int64, -1 = unlabeled) and per-pixel confidence [H,W] in [0, 1].

    class_cover [K, 1000]: the ImageNet classes each class covers (omniseg.recognition.concepts);
    with regions carrying the frozen recognizer's probabilities, region scores are fused with it.

    Confidence ("unknown" as an answer): how much better the winning class explains the pixel than
    any *other* concept the model knows, ``reference`` [R, D] (its training names, minus those that
    are the asked classes themselves): sigmoid((y_k - y_ref) / CONFIDENCE_SCALE), y_k the winning
    score and y_ref eq. 6 with each region's best cosine to those other concepts. 0.5 = as good as the
    best known alternative. Without a reference, y_ref = 0.
    ``threshold``: pixels below this confidence are unlabeled (-1).

    Logits are computed at the masks' resolution and upsampled bilinearly: cheaper than
    upsampling N masks, and identical in the limit of smooth masks.
    """
    a = regions.pixel_weight
    size = out_size or regions.image_size
    if a >= 1.0 and threshold is None:
        assert regions.pixel_embeddings is not None
        label, score = nearest_class_per_pixel(regions.pixel_embeddings, prompt_embeddings, prompt_to_class, size)
        return label, torch.sigmoid(score / CONFIDENCE_SCALE)
    logits: torch.Tensor | float = 0.0
    if a < 1.0:
        class_sim = region_class_similarity(
            regions, prompt_embeddings, prompt_to_class, num_classes, class_cover, fusion
        )
        logits = (1 - a) * semantic_logits(regions.masks, class_sim)  # [K, h, w]
        if class_cover is not None and fusion is not None and regions.imagenet_pixel_logits is not None:
            covered = covered_pixel_probability(
                class_cover, regions.imagenet_pixel_logits, (logits.shape[-2], logits.shape[-1]), fusion.temperature
            )
            logits = logits + fusion.pixel_weight * covered.to(logits.dtype)
    if a > 0.0:
        assert regions.pixel_embeddings is not None
        pixel = pixel_class_logits(regions.pixel_embeddings, prompt_embeddings, prompt_to_class, num_classes)
        logits = logits + a * pixel
    assert isinstance(logits, torch.Tensor)
    label, score = upsampled_argmax(logits, tuple(size))
    others = other_concepts(reference, prompt_embeddings)
    confidence = torch.sigmoid((score - reference_score(regions, others, size, a)) / CONFIDENCE_SCALE)
    if threshold is not None:
        label = torch.where(confidence < threshold, torch.full_like(label, -1), label)
    return label, confidence


def other_concepts(reference: torch.Tensor | None, prompt_embeddings: torch.Tensor) -> torch.Tensor | None:
    """The reference concepts that are not (near-)duplicates of the asked classes' prompts: the
    alternatives a pixel's answer must beat. A reference name within SAME_CONCEPT_COSINE of an asked
    prompt is that class itself ("car" asked, "car" trained)."""
    if reference is None or len(reference) == 0 or len(prompt_embeddings) == 0:
        return reference
    same = (reference.to(prompt_embeddings.dtype) @ prompt_embeddings.T).max(dim=1).values >= SAME_CONCEPT_COSINE
    return reference[~same]


def reference_score(
    regions: Regions, reference: torch.Tensor | None, size: tuple[int, int], pixel_weight: float = 0.0
) -> torch.Tensor | float:
    """y_ref [H, W]: eq. 6 with each region's best cosine to the reference concepts (0 without any)."""
    if reference is None or len(reference) == 0 or len(regions) == 0 or pixel_weight >= 1.0:
        return 0.0
    best = (reference.to(regions.embeddings.dtype) @ regions.embeddings.T).max(dim=0).values  # [N]
    y_ref = (1 - pixel_weight) * semantic_logits(regions.masks, best[None])  # [1, h, w]
    if tuple(y_ref.shape[-2:]) != tuple(size):
        y_ref = F.interpolate(y_ref[None], size=size, mode="bilinear", align_corners=False)[0]
    return y_ref[0]


def pixel_class_logits(
    pixel_embeddings: torch.Tensor, prompt_embeddings: torch.Tensor, prompt_to_class: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """[K, h, w]: <class, pixel embedding>, max over each class's prompts (per-pixel / ESS head)."""
    d, h, w = pixel_embeddings.shape
    sim = prompt_embeddings.to(pixel_embeddings.dtype) @ pixel_embeddings.reshape(d, -1)  # [M, hw]
    return class_max_over_prompts(sim, prompt_to_class, num_classes).reshape(num_classes, h, w)


def nearest_class_per_pixel(
    pixel_embeddings: torch.Tensor,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    out_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESS inference (ESSNet): each pixel takes the class of its nearest prompt.

    The nearest prompt over all of a class's prompts is the max over prompts, so the label is the
    argmax of pixel_class_logits. The search is the exact path of omniseg.search's vocabulary index
    at the embeddings' stride: the prompts here are a vocabulary's candidates for this one image,
    and an approximate index built per call would cost more than it saves. Then the label map is
    upsampled (nearest) and the score bilinearly.
    """

    d, h, w = pixel_embeddings.shape
    queries = pixel_embeddings.reshape(d, -1).T.float().numpy()
    found_scores, found_ids = exact_topk(queries, prompt_embeddings.detach().float().numpy(), 1)
    scores, ids = torch.from_numpy(found_scores), torch.from_numpy(found_ids)
    label = prompt_to_class.to(torch.int64)[ids[:, 0]].reshape(1, 1, h, w).float()
    score = scores[:, 0].reshape(1, 1, h, w).to(pixel_embeddings.dtype)
    if (h, w) != tuple(out_size):
        label = F.interpolate(label, size=out_size, mode="nearest")
        score = F.interpolate(score, size=out_size, mode="bilinear", align_corners=False)
    return label[0, 0].long(), score[0, 0]


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax_k and max_k of the bilinearly upsampled logits [K,h,w] -> [H,W] each.

    Only classes among the PRUNE_TOP best of at least one grid cell are upsampled: an upsampled
    pixel mixes at most four cells, and a class that is third or worse in all of the image's cells
    essentially never wins the mix. This bounds the full-resolution work by the number of classes
    actually present (tens), not the vocabulary (measured: identical CamVid/MSRC val mIoU).
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        score, label = logits.max(dim=0)
        return label, score
    keep = None
    if logits.shape[0] > PRUNE_TOP:
        keep = torch.unique(logits.topk(PRUNE_TOP, dim=0).indices)
        logits = logits[keep]
    score, label = upsampled_max(logits, size)  # chunked: bounded memory whatever is left
    return (keep[label] if keep is not None else label), score


def candidate_classes(
    regions: Regions, vocabulary: Vocabulary, k: int = TOP_K, config: SearchConfig | None = None
) -> np.ndarray:
    """Sorted unique class ids: the k best classes of each region, looked up in the vocabulary's index."""
    assert vocabulary.prompt_to_class is not None
    offsets = vocabulary.class_prompt_offsets()
    per_class = int(min(4, max(1, int(np.max(np.diff(offsets))))))
    scores, ids = vocabulary.index(config).search(regions.embeddings.float().numpy(), k * per_class)
    owners = np.where(ids >= 0, vocabulary.prompt_to_class[np.maximum(ids, 0)], -1)
    chosen: set[int] = set()
    for row in owners:
        firsts = list(dict.fromkeys(int(c) for c in row if c >= 0))[:k]
        chosen.update(firsts)
    return np.asarray(sorted(chosen), dtype=np.int64)


def semantic_segmentation_vocab(
    regions: Regions,
    vocabulary: Vocabulary,
    out_size: tuple[int, int] | None = None,
    threshold: float | None = None,
    k: int = TOP_K,
    config: SearchConfig | None = None,
    fusion: RecognizerFusion | None = None,
    reference: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``semantic_segmentation`` with an embedded Vocabulary of any size; labels are class ids.
    fusion: the frozen recognizer's (omniseg.recognition.fusion), used when the regions carry its
    probabilities."""
    assert vocabulary.embeddings is not None and vocabulary.prompt_to_class is not None
    dtype = regions.embeddings.dtype
    use_fusion = fusion is not None and regions.imagenet_probs is not None
    fusion_config = fusion.config if fusion is not None and use_fusion else None
    if len(vocabulary) <= DIRECT_MAX_CLASSES:
        prompts = torch.from_numpy(np.array(vocabulary.embeddings, np.float32)).to(dtype)  # a copy: maps are read-only
        owner = torch.from_numpy(np.asarray(vocabulary.prompt_to_class))
        cover = fusion.class_cover(vocabulary) if fusion is not None and use_fusion else None
        return semantic_segmentation(
            regions, prompts, owner, len(vocabulary), out_size, threshold, cover, fusion_config, reference
        )
    classes = candidate_classes(regions, vocabulary, k, config)
    if fusion is not None and use_fusion:  # what the frozen head sees, which the trained index may not
        classes = np.union1d(classes, fusion.candidates(vocabulary, regions))
    sub_prompts, sub_owner = vocabulary.restricted(classes)
    cover = fusion.class_cover(vocabulary, classes) if fusion is not None and use_fusion else None
    label, score = semantic_segmentation(
        regions,
        torch.from_numpy(sub_prompts).to(dtype),
        torch.from_numpy(sub_owner),
        len(classes),
        out_size,
        threshold,
        cover,
        fusion_config,
        reference,
    )
    global_ids = torch.from_numpy(classes)
    return torch.where(label >= 0, global_ids[label.clamp(min=0)], label), score
