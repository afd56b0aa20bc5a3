"""The training objective: the losses of one batch (omniseg.train.losses) weighted and summed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omniseg.data.uniform import IGNORE
from omniseg.models.openseg import OpenSegModel
from omniseg.train import losses as L
from omniseg.train.config import TrainConfig
from omniseg.train.data import Batch, TrainData, TrainSource
from omniseg.train.targets import target_segments


def _weighted_mean(items: list[tuple[torch.Tensor, float]], zero: torch.Tensor) -> torch.Tensor:
    return torch.stack([v * w for v, w in items]).sum() / len(items) if items else zero


def compute_losses(model: OpenSegModel, cfg: TrainConfig, data: TrainData, batch: Batch) -> dict[str, torch.Tensor]:
    out = model(batch.x)
    # Losses at stride 2: a quarter of the pixels of the crop, 3x faster backward, thin classes kept.
    y = batch.y[:, 1::2, 1::2]
    zero = batch.x.new_zeros(())
    scale = model.logit_scale_class.exp()
    lseg = model.config.arch == "lseg"
    pixel_emb = None
    if "pixel_embeddings" in out:
        pixel_emb = F.interpolate(out["pixel_embeddings"], size=y.shape[-2:], mode="bilinear", align_corners=False)
    if not lseg:
        logits = F.interpolate(out["mask_logits"], size=y.shape[-2:], mode="bilinear", align_corners=False)
        logits_flat = logits.flatten(2)  # [B, N, P]
        masks = logits_flat.sigmoid()
        z = out["embeddings"]
    seg, bce, objness = [], [], []
    region, pixel, ess = [], [], []
    regions_for_grounding, words = [], []
    for b, s in enumerate(batch.which):
        src = data.sources[s]
        labels = y[b].reshape(-1)
        instance_map = batch.instances[b]
        inst = instance_map[1::2, 1::2] if instance_map is not None else None
        classed = src.task not in ("caption", "pseudo")
        if classed and pixel_emb is not None and cfg.losses.ess > 0:
            ess.append(ess_pixel_loss(model, cfg, data, src, pixel_emb[b], labels, b))
        if lseg:
            assert pixel_emb is not None  # an lseg model always has its pixel head
            if classed:  # LSeg+: per-pixel cross-entropy against the dataset's class names
                sim = src.text @ pixel_emb[b].flatten(1)  # [M, P]
                class_logits = L.class_max_over_prompts(sim, src.prompt_to_class, len(src.classes))
                pixel.append(F.cross_entropy((class_logits * scale).T, labels, ignore_index=IGNORE))
            continue
        target, target_class, valid = target_segments(src, y[b], inst)
        class_sim = None
        if classed:
            class_sim = L.class_max_over_prompts(src.text @ z[b].T, src.prompt_to_class, len(src.classes))  # [K,N]
            pixel.append(L.pixel_class_loss(masks[b], class_sim, labels, scale))
        image_words = [data.word_text[batch.words[b]]] if batch.words[b] else []
        if classed:
            named = torch.unique(target_class[target_class >= 0])  # image-level labels
            if len(named):
                image_words.insert(0, src.name_text[named])
        if image_words:
            regions_for_grounding.append(z[b])
            words.append(torch.cat(image_words))
        if len(target) == 0:
            continue
        loss_s, best = L.dice_best_match_loss(masks[b], target, valid, one_to_one=cfg.one_to_one_matching)
        seg.append((loss_s, src.loss_weight))
        bce.append((L.matched_mask_bce(logits_flat[b], best, target, valid), src.loss_weight))
        obj_target = torch.zeros_like(out["objectness"][b])
        obj_target[best] = 1.0
        objness.append((F.binary_cross_entropy_with_logits(out["objectness"][b], obj_target), src.loss_weight))
        if class_sim is not None:
            region.append(L.region_class_loss(class_sim, best, target_class, scale))
    terms = {
        "segmentation": _weighted_mean(seg, zero),
        "mask_bce": _weighted_mean(bce, zero),
        "region_class": torch.stack(region).mean() if region else zero,
        "pixel_class": torch.stack(pixel).mean() if pixel else zero,
        "objectness": _weighted_mean(objness, zero),
        "grounding": (
            L.grounding_loss(regions_for_grounding, words, model.logit_scale_grounding.exp())
            if len(words) > 1 and not lseg
            else zero
        ),
    }
    if cfg.losses.distill > 0 and not lseg and "imagenet_logits" in out and data.imagenet_text is not None:
        terms["distill"] = L.distillation_loss(z, out["imagenet_logits"], data.imagenet_text, masks)
    if pixel_emb is not None and cfg.losses.ess > 0:
        terms["ess"] = torch.stack(ess).mean() if ess else zero
        terms["ess_reg"] = L.ess_regularization(model.class_map, data.union_text)
    weights = cfg.losses
    terms["total"] = sum(getattr(weights, k) * v for k, v in terms.items())
    return terms


def ess_pixel_loss(
    model: OpenSegModel,
    cfg: TrainConfig,
    data: TrainData,
    src: TrainSource,
    pixel_emb: torch.Tensor,
    labels: torch.Tensor,
    b: int,
) -> torch.Tensor:
    """ESS loss of one image on up to cfg.ess_pixels labelled pixels (sampled with a fixed seed)."""
    valid = torch.nonzero((labels != IGNORE) & (labels < len(src.classes))).squeeze(1)
    if len(valid) == 0:
        return pixel_emb.new_zeros(())
    gen = torch.Generator().manual_seed(int(labels.sum()) * 1000003 + b)
    pick = valid[torch.randperm(len(valid), generator=gen)[: cfg.ess_pixels]]
    emb = pixel_emb.flatten(1)[:, pick].T  # [S, D]
    positive = src.union_ids[labels[pick]]
    return L.ess_loss(emb, positive, data.union_text, cfg.ess_negatives, model.logit_scale_class.exp())
