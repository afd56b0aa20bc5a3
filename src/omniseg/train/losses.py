"""Training losses of the first recipe (seeds/003 eq. 1-4) plus the supervised terms.

All take per-image tensors; the batch dimension is handled by the caller because images in one
batch come from datasets with different vocabularies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omniseg.tasks.semantic import class_max_over_prompts, semantic_logits

__all__ = [
    "class_max_over_prompts",
    "dice_best_match_loss",
    "distillation_loss",
    "ess_loss",
    "ess_regularization",
    "grounding_loss",
    "matched_mask_bce",
    "pixel_class_loss",
    "region_class_loss",
]


def dice_matrix(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Dice(s_i, s_j^l) for every prediction i and target j: pred [N,P], target [M,P] -> [N,M]."""
    if valid is not None:
        pred = pred * valid
        target = target * valid
    inter = pred @ target.T
    return 2 * inter / (pred.sum(1, keepdim=True) + target.sum(1).unsqueeze(0)).clamp(min=1e-6)


def dice_best_match_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, one_to_one: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: L_S = 1/M sum_j (1 - max_i Dice(s_i, s_j^l)).

    pred [N,P] soft masks, target [M,P] binary masks, valid [P] (0 = ignore pixel).
    Returns the loss and, for each target, the index of its matched prediction.

    one_to_one restricts the max to a one-to-one assignment (Hungarian, on Dice). With the plain
    per-target max, nearly identical queries at the start of training all pick the same query
    for every segment; that query grows towards an all-ones mask and the model collapses (seen on
    this project's first run). With N >= M the assignment is the max over distinct queries.
    """
    dice = dice_matrix(pred, target, valid)
    if one_to_one and target.shape[0] <= pred.shape[0]:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-dice.detach().cpu().numpy())
        index = torch.empty(target.shape[0], dtype=torch.long)
        index[torch.as_tensor(cols, dtype=torch.long)] = torch.as_tensor(rows, dtype=torch.long)
        best = dice[index, torch.arange(target.shape[0])]
    else:
        best, index = dice.max(dim=0)
    return (1 - best).mean(), index


def matched_mask_bce(
    mask_logits: torch.Tensor, matched: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy between each segment's best-matched mask and the segment.

    Dice alone has a vanishing gradient once a sigmoid saturates; an all-ones mask is then a trap
    (seen in practice). mask_logits [N,P], matched [M], target [M,P], valid [P].
    """
    bce = F.binary_cross_entropy_with_logits(mask_logits[matched], target, reduction="none")
    if valid is None:
        return bce.mean()
    return (bce * valid).sum() / (valid.sum() * len(matched)).clamp(min=1)


def grounding_similarity(regions: torch.Tensor, words: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Eq. 3: G(I, C) = 1/K sum_j sum_i softmax_i(<z_i,w_j>/tau) <z_i,w_j>; regions [N,D], words [K,D]."""
    sim = regions @ words.T  # [N, K]
    attn = torch.softmax(sim * scale, dim=0)
    return (attn * sim).sum(0).mean()


def grounding_loss(regions: list[torch.Tensor], words: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """Eq. 4: contrastive over the batch in both directions (image->caption, caption->image)."""
    b = len(regions)
    g = torch.stack(
        [torch.stack([grounding_similarity(regions[i], words[j], scale) for j in range(b)]) for i in range(b)]
    )  # g[i, j] = G(I_i, C_j)
    target = torch.arange(b)
    return F.cross_entropy(g.T * scale, target) + F.cross_entropy(g * scale, target)


def region_class_loss(
    class_sim: torch.Tensor, matched: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Each ground-truth segment's best-matched region must name its class among the dataset's.

    class_sim [K,N] cosine of every class to every region, matched [M] region index per segment,
    target [M] class id per segment.
    """
    return F.cross_entropy(class_sim[:, matched].T * scale, target)


def pixel_class_loss(
    masks: torch.Tensor, class_sim: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Per-pixel cross-entropy on the eq. 6 logits, so training optimises the inference path."""
    y = semantic_logits(masks, class_sim)  # [K, P]
    return F.cross_entropy((y * scale).T, labels.reshape(-1), ignore_index=ignore_index)


def ess_loss(
    pixels: torch.Tensor, positive: torch.Tensor, class_text: torch.Tensor, k: int, scale: torch.Tensor
) -> torch.Tensor:
    """ESSNet's embedding loss (seeds/004): each pixel against its class and its k nearest negatives.

    pixels [S, D]: pixel embeddings already mapped to the text side (W^T e, see OpenSegModel);
    positive [S]: row of each pixel's class in class_text [U, D] (unit text embeddings of the whole
    training vocabulary). The negatives are the k classes nearest to each pixel other than its own,
    found by FAISS on the detached embeddings, so the cost is S*U*D for the search and S*(k+1)*D for
    the loss, whatever the size of the vocabulary.
    """
    from omniseg.search import PromptIndex

    k = min(k, class_text.shape[0] - 1)
    if k < 1:
        return pixels.new_zeros(())
    index = PromptIndex.build(class_text.detach().float().numpy(), kind="flat")
    ids = torch.from_numpy(index.search(pixels.detach().float().numpy(), k + 1)[1])
    # Drop the positive where it is among the k + 1 found; otherwise drop the farthest.
    is_pos = ids == positive.unsqueeze(1)
    drop = torch.where(is_pos.any(1), is_pos.float().argmax(1), torch.full_like(positive, k))
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[torch.arange(len(ids)), drop] = False
    negatives = ids[keep].view(len(ids), k)
    candidates = torch.cat([positive.unsqueeze(1), negatives], dim=1)  # [S, k+1], positive first
    logits = torch.einsum("sd,skd->sk", pixels, class_text[candidates]) * scale
    return F.cross_entropy(logits, torch.zeros(len(pixels), dtype=torch.long))


def ess_regularization(class_map: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
    """Keeps the learned class embeddings c = W t well spread: unit norm (ESSNet's normalisation
    against class-frequency bias, seeds/004 Fig. 4) and no pair closer than its text embeddings.
    class_map W [D, D], class_text [U, D] unit rows."""
    c = class_text @ class_map.T  # rows W t
    norm = c.norm(dim=1)
    cos_c = F.normalize(c, dim=1) @ F.normalize(c, dim=1).T
    cos_t = class_text @ class_text.T
    off = ~torch.eye(len(c), dtype=torch.bool)
    spread = F.relu(cos_c - cos_t)[off].mean() if len(c) > 1 else c.new_zeros(())
    return ((norm - 1) ** 2).mean() + spread


def distillation_loss(
    embeddings: torch.Tensor, imagenet_logits: torch.Tensor, imagenet_text: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Pull each region embedding toward the probability-weighted text embedding of the ImageNet
    names the frozen head sees in the region (its teacher; Detic learns from ImageNet labels the
    same way). The text space itself moves toward the 1000 ImageNet concepts, on every training
    image, whatever its own label set.

    embeddings [B,N,D] (unit), imagenet_logits [B,N,1000] (frozen, no gradient), imagenet_text
    [1000,D], masks [B,N,P] soft masks. Each region counts by the head's confidence (its top
    probability: a flat distribution over 1000 classes, as on sky or road, teaches nothing) times its
    share of the image's mask mass.
    """
    probs = imagenet_logits.detach().softmax(-1)
    target = F.normalize(probs @ imagenet_text.to(probs.dtype), dim=-1)  # [B,N,D]
    cosine = (embeddings * target).sum(-1)
    mass = masks.detach().sum(-1)
    weight = probs.max(-1).values * mass / mass.sum(-1, keepdim=True).clamp(min=1e-6)
    return ((1 - cosine) * weight).sum() / weight.sum().clamp(min=1e-6)
