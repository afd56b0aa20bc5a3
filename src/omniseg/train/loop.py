"""`omniseg train CONFIG`: multi-dataset training of the native model with resume.

Checkpoints hold everything needed to continue exactly (model, optimiser, step); the sampler is a
pure function of (seed, step), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from omniseg.data.transforms import random_crop_flip
from omniseg.data.uniform import IGNORE, UniformDataset, read_mask, read_rgb
from omniseg.io import atomic_write_text
from omniseg.models.openseg import OpenSegModel
from omniseg.text.encoder import default_text_encoder
from omniseg.train import losses as L
from omniseg.train.config import TrainConfig
from omniseg.vocab import Vocabulary


@dataclass
class TrainSource:
    name: str
    classes: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    text: torch.Tensor  # [M, D] prompt embeddings
    prompt_to_class: torch.Tensor  # [M]
    name_text: torch.Tensor  # [K, D] one embedding per class name (the grounding "words")


def load_sources(cfg: TrainConfig) -> tuple[list[TrainSource], np.ndarray]:
    encoder = default_text_encoder()
    sources, weights = [], []
    for spec in cfg.datasets:
        ds = UniformDataset(spec.path)
        samples = ds.split("train", spec.val_fraction, cfg.split_seed)
        vocab = Vocabulary.from_names(ds.classes).embed(encoder)
        names = torch.from_numpy(encoder.encode(ds.classes))
        images = [read_rgb(s.image_path) for s in tqdm(samples, desc=f"load {ds.name}", leave=False)]
        masks = [read_mask(s.mask_path, len(ds.classes)) for s in samples if s.mask_path is not None]
        sources.append(
            TrainSource(
                ds.name,
                ds.classes,
                images,
                masks,
                torch.from_numpy(vocab.embeddings),
                torch.from_numpy(vocab.prompt_to_class),
                names,
            )
        )
        weights.append(spec.weight)
    w = np.asarray(weights, dtype=np.float64)
    return sources, w / w.sum()


def draw_batch(cfg: TrainConfig, sources: list[TrainSource], weights: np.ndarray, step: int):
    rng = np.random.default_rng([cfg.seed, step])
    images, labels, which = [], [], []
    for _ in range(cfg.batch_size):
        s = int(rng.choice(len(sources), p=weights))
        i = int(rng.integers(len(sources[s].images)))
        im, mk = random_crop_flip(
            sources[s].images[i], sources[s].masks[i], rng, cfg.short_side, cfg.crop, cfg.scale_range
        )
        images.append(im)
        labels.append(mk)
        which.append(s)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(np.stack(labels).astype(np.int64))
    return x, y, which


def compute_losses(
    model: OpenSegModel,
    cfg: TrainConfig,
    sources: list[TrainSource],
    x: torch.Tensor,
    y: torch.Tensor,
    which: list[int],
) -> dict[str, torch.Tensor]:
    out = model(x)
    # Losses at stride 2: a quarter of the pixels of the crop, 3x faster backward, thin classes kept.
    y = y[:, 1::2, 1::2]
    logits = F.interpolate(out["mask_logits"], size=y.shape[-2:], mode="bilinear", align_corners=False)
    logits_flat = logits.flatten(2)  # [B, N, P]
    masks = logits_flat.sigmoid()
    z = out["embeddings"]
    seg, bce, region, pixel, objness = [], [], [], [], []
    regions_for_grounding, words = [], []
    for b, s in enumerate(which):
        src = sources[s]
        labels = y[b].reshape(-1)
        valid = (labels != IGNORE).float()
        present = torch.unique(labels[labels != IGNORE])
        class_sim = L.class_max_over_prompts(src.text @ z[b].T, src.prompt_to_class, len(src.classes))  # [K,N]
        pixel.append(L.pixel_class_loss(masks[b], class_sim, labels, model.logit_scale_class.exp()))
        if len(present) == 0:
            continue
        target = (labels.unsqueeze(0) == present.unsqueeze(1)).float()  # [M, P]
        loss_s, best = L.dice_best_match_loss(masks[b], target, valid, one_to_one=cfg.one_to_one_matching)
        seg.append(loss_s)
        bce.append(L.matched_mask_bce(logits_flat[b], best, target, valid))
        region.append(L.region_class_loss(class_sim, best, present, model.logit_scale_class.exp()))
        obj_target = torch.zeros_like(out["objectness"][b])
        obj_target[best] = 1.0
        objness.append(F.binary_cross_entropy_with_logits(out["objectness"][b], obj_target))
        regions_for_grounding.append(z[b])
        words.append(src.name_text[present])
    zero = x.new_zeros(())
    terms = {
        "segmentation": torch.stack(seg).mean() if seg else zero,
        "mask_bce": torch.stack(bce).mean() if bce else zero,
        "region_class": torch.stack(region).mean() if region else zero,
        "pixel_class": torch.stack(pixel).mean(),
        "objectness": torch.stack(objness).mean() if objness else zero,
        "grounding": (
            L.grounding_loss(regions_for_grounding, words, model.logit_scale_grounding.exp())
            if len(words) > 1
            else zero
        ),
    }
    weights = cfg.losses
    terms["total"] = sum(getattr(weights, k) * v for k, v in terms.items())
    return terms


def lr_factor(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: OpenSegModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": head, "lr": cfg.lr, "base_lr": cfg.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.backbone_lr, "base_lr": cfg.backbone_lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def save_checkpoint(directory: Path, model: OpenSegModel, optimizer: torch.optim.Optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.trainable_state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    # A checkpoint is also a loadable model directory (omniseg eval --model runs/x/checkpoint).
    (tmp / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, model: OpenSegModel, optimizer: torch.optim.Optimizer) -> int:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    # Our own file, written by save_checkpoint; weights_only refuses arbitrary objects anyway.
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return int(json.loads((directory / "state.json").read_text())["step"])


def _truncate_log(log_path: Path, step: int) -> None:
    """After a crash the log may run past the checkpoint; drop those lines so steps never repeat."""
    if not log_path.is_file():
        return
    kept = [
        line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    atomic_write_text(log_path, "".join(line + "\n" for line in kept))


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    model = OpenSegModel(cfg.model)
    model.train()
    optimizer = build_optimizer(model, cfg)
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, optimizer) if resume and (ckpt / "state.json").is_file() else 0
    sources, weights = load_sources(cfg)
    log_path = out / "log.jsonl"
    _truncate_log(log_path, step)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True)
    start = time.time()
    running: dict[str, float] = {}
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(cfg, step)
        x, y, which = draw_batch(cfg, sources, weights, step)
        terms = compute_losses(model, cfg, sources, x, y, which)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale_class.clamp_(0, math.log(100))
            model.logit_scale_grounding.clamp_(0, math.log(100))
        step += 1
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            record = {
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed": round(time.time() - start, 1),
                **{k: round(v / n, 5) for k, v in running.items()},
            }
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['total']:.3f}")
            running = {}
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, model, optimizer, step)
    bar.close()
    final = out / "model"
    model.eval().save_pretrained(final, {"trained_steps": step})
    from omniseg.train.plot import plot_log

    plot_log(log_path, out / "loss_curve.png")
    return final
