"""`omniseg train CONFIG`: multi-dataset training of the native model with resume.

Checkpoints hold everything needed to continue exactly (model, optimiser, step); the sampler is a
pure function of (seed, step), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from omniseg.data.segments import ClassRoles
from omniseg.data.transforms import random_crop_flip
from omniseg.data.uniform import IGNORE, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError, ModelLoadError
from omniseg.io import atomic_write_text
from omniseg.models.openseg import OpenSegModel
from omniseg.recognition.concepts import imagenet_names
from omniseg.text.encoder import default_text_encoder
from omniseg.train import losses as L
from omniseg.train.config import TrainConfig
from omniseg.train.words import keep_words
from omniseg.vocab import Vocabulary


@dataclass
class TrainSource:
    name: str
    task: str
    classes: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]  # class ids (pseudo: segment ids, 0 = none; caption: all IGNORE)
    instances: list[np.ndarray] | None  # instance ids per image (instance / panoptic tasks)
    text: torch.Tensor  # [M, D] prompt embeddings
    prompt_to_class: torch.Tensor  # [M]
    name_text: torch.Tensor  # [K, D] one embedding per class name (the image-level label "words")
    union_ids: torch.Tensor  # [K] each class's row in TrainData.union_text (same name = same row)
    roles: ClassRoles
    caption_words: list[list[int]] | None  # per image, rows of TrainData.word_text
    loss_weight: float = 1.0


@dataclass
class TrainData:
    sources: list[TrainSource]
    weights: np.ndarray  # sampling probability per source
    word_text: torch.Tensor  # [W, D] embeddings of every caption word
    union_text: torch.Tensor  # [U, D] every class name of every source, once (the ESS vocabulary)
    # [1000, D] the ImageNet class names in the text space: the distillation loss's targets.
    imagenet_text: torch.Tensor | None = None


def _source_weights(cfg: TrainConfig, sizes: list[int]) -> np.ndarray:
    w = np.asarray(
        [
            spec.weight if spec.weight is not None else (spec.ratio * n if spec.ratio is not None else 1.0)
            for spec, n in zip(cfg.datasets, sizes, strict=True)
        ],
        dtype=np.float64,
    )
    return w / w.sum()


def load_sources(cfg: TrainConfig) -> TrainData:
    from omniseg.data.segments import class_roles, instance_path, read_instance_map
    from omniseg.train.words import image_words

    encoder = default_text_encoder()
    sources: list[TrainSource] = []
    words: dict[str, int] = {}
    union: dict[str, int] = {}
    for spec in cfg.datasets:
        ds = UniformDataset(spec.path)
        samples = ds.split("train", spec.val_fraction, cfg.split_seed)
        if spec.task in ("instance", "panoptic") and not (ds.root / "instances").is_dir():
            raise InputError(f"dataset {ds.name}: task {spec.task} needs an instances/ folder")
        if spec.task not in ("caption",) and any(s.mask_path is None for s in samples):
            raise InputError(f"dataset {ds.name}: task {spec.task} needs a mask for every image")
        captions_file = ds.root / "captions.json"
        caption_words = None
        if spec.captions and captions_file.is_file():
            captions = json.loads(captions_file.read_text())
            caption_words = []
            for s in samples:
                ids = []
                for w in image_words(captions.get(s.id, [])):
                    ids.append(words.setdefault(w, len(words)))
                caption_words.append(ids)
        elif spec.task == "caption":
            raise InputError(f"dataset {ds.name}: task caption needs captions.json")
        vocab = Vocabulary.from_names(ds.classes).embed(encoder)
        names = torch.from_numpy(encoder.encode(ds.classes))
        images = [read_rgb(s.image_path) for s in tqdm(samples, desc=f"load {ds.name}", leave=False)]
        if spec.task == "caption":
            masks = [np.full(im.shape[:2], IGNORE, np.uint8) for im in images]
        else:
            masks = [read_mask(s.mask_path, len(ds.classes)) for s in samples if s.mask_path is not None]
        instances = None
        if spec.task in ("instance", "panoptic"):
            instances = []
            for s, m in zip(samples, masks, strict=True):
                path = instance_path(ds, s)
                instances.append(read_instance_map(path) if path else np.zeros(m.shape, np.int64))
        sources.append(
            TrainSource(
                ds.name,
                spec.task,
                ds.classes,
                images,
                masks,
                instances,
                torch.from_numpy(vocab.embeddings),
                torch.from_numpy(vocab.prompt_to_class),
                names,
                torch.tensor([union.setdefault(c, len(union)) for c in ds.classes]),
                class_roles(ds),
                caption_words,
                spec.loss_weight,
            )
        )
    word_list, union_list = sorted(words, key=words.get), sorted(union, key=union.get)
    dim = sources[0].text.shape[1]
    word_text = torch.from_numpy(encoder.encode(word_list)) if word_list else torch.zeros(0, dim)
    union_text = F.normalize(torch.from_numpy(encoder.encode(union_list)), dim=-1)
    imagenet_text = torch.from_numpy(encoder.encode(list(imagenet_names()))) if cfg.losses.distill > 0 else None
    sizes = [len(s.images) for s in sources]
    return TrainData(sources, _source_weights(cfg, sizes), word_text, union_text, imagenet_text)


@dataclass
class Batch:
    x: torch.Tensor  # [B, 3, H, W] in 0..1
    y: torch.Tensor  # [B, H, W] class ids (pseudo: segment ids)
    instances: list[torch.Tensor | None]
    which: list[int]  # source per item
    words: list[list[int]]  # kept caption words per item (rows of word_text)


def draw_batch(cfg: TrainConfig, data: TrainData, step: int, part: tuple[int, int] = (0, 1)) -> Batch:
    """The items of the global batch of ``step`` that belong to process ``part`` = (rank, world).

    Item b depends only on (seed, step, b): any split of the batch over processes, and any resume,
    sees exactly the items of an uninterrupted single-process run.
    """
    rank, world = part
    images, labels, instances, which, words = [], [], [], [], []
    for b in range(rank, cfg.batch_size, world):
        rng = np.random.default_rng([cfg.seed, step, b])
        s = int(rng.choice(len(data.sources), p=data.weights))
        src = data.sources[s]
        i = int(rng.integers(len(src.images)))
        inst = src.instances[i] if src.instances is not None else None
        out = random_crop_flip(src.images[i], src.masks[i], rng, cfg.short_side, cfg.crop, cfg.scale_range, inst)
        images.append(out[0])
        labels.append(out[1])
        instances.append(torch.from_numpy(out[2].astype(np.int64)) if inst is not None else None)
        which.append(s)
        words.append(keep_words(src.caption_words[i], cfg.keep_prob, rng) if src.caption_words else [])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(np.stack(labels).astype(np.int64))
    return Batch(x, y, instances, which, words)


def target_segments(
    src: TrainSource, label_map: torch.Tensor, instances: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground-truth segments of one crop for the source's task.

    label_map [h, w] class ids (pseudo: segment ids), instances [h, w] or None. Returns binary masks
    [M, P] over the P = h*w pixels, their class ids [M] (-1 = class-agnostic) and the valid mask [P].
    """
    labels = label_map.reshape(-1)
    if src.task == "caption":
        return labels.new_zeros(0, labels.numel()).float(), labels.new_zeros(0), labels.new_zeros(labels.shape).float()
    if src.task == "pseudo":
        valid = (labels != IGNORE) & (labels > 0)
        ids = torch.unique(labels[valid])
        return (labels.unsqueeze(0) == ids.unsqueeze(1)).float(), torch.full_like(ids, -1), valid.float()
    valid = labels != IGNORE
    if src.task in ("instance", "panoptic"):
        from omniseg.data.segments import ground_truth_segments

        assert instances is not None
        id_map, segments = ground_truth_segments(label_map.numpy(), instances.numpy(), src.roles)
        keep = [g for g in segments if not g.iscrowd and (src.task == "panoptic" or src.roles.isthing[g.category_id])]
        ids = torch.from_numpy(id_map).reshape(-1)
        empty = labels.new_zeros(0, labels.numel()).float()
        masks = torch.stack([ids == g.id for g in keep]).float() if keep else empty
        return masks, torch.tensor([g.category_id for g in keep], dtype=torch.long), valid.float()
    present = torch.unique(labels[valid])
    if src.task == "binary":
        present = present[~torch.tensor(src.roles.void, dtype=torch.bool)[present.clamp(max=len(src.classes) - 1)]]
    return (labels.unsqueeze(0) == present.unsqueeze(1)).float(), present, valid.float()


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
        inst = batch.instances[b][1::2, 1::2] if batch.instances[b] is not None else None
        classed = src.task not in ("caption", "pseudo")
        if classed and pixel_emb is not None and cfg.losses.ess > 0:
            ess.append(ess_pixel_loss(model, cfg, data, src, pixel_emb[b], labels, b))
        if lseg:
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
    """Resume from ``directory``. A corrupt, truncated or foreign checkpoint (or an optimizer.pt
    holding objects: weights_only refuses them unbuilt) is a ModelLoadError naming the file, one
    line: delete the checkpoint to start over, or keep it to inspect."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    def refuse(name: str, exc: BaseException) -> ModelLoadError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return ModelLoadError(
            f"checkpoint file {directory / name} cannot be resumed from ({exc.__class__.__name__}: {first[:200]}); "
            "delete the checkpoint directory to start over"
        )

    try:
        weights = load_file(str(directory / "model.safetensors"))
        if any(v.is_floating_point() and not bool(v.isfinite().all()) for v in weights.values()):
            raise ValueError("NaN or infinite weights")
        model.load_state_dict(weights, strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise refuse("model.safetensors", exc) from exc
    try:
        # Our own file, written by save_checkpoint; weights_only refuses arbitrary objects anyway.
        with warnings.catch_warnings():  # torch's multi-line warnings about what it refused: the error says it
            warnings.simplefilter("ignore")
            optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError, KeyError, ValueError: unusable
        raise refuse("optimizer.pt", exc) from exc
    try:
        return int(json.loads((directory / "state.json").read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise refuse("state.json", exc) from exc


def init_from_model(model: OpenSegModel, source: str | Path) -> dict[str, list[str]]:
    """Copy a trained model's weights into ``model`` before step 0 (fine-tuning, as Detectron2's
    MODEL.WEIGHTS). Tensors of equal shape are copied; the learnable queries row by row, so a run
    with more queries keeps the trained ones and the extra ones start from their random init.
    Tensors the source lacks (a head it did not have) stay as initialised. Any other difference
    (another feature size, another text encoder) is an InputError: those weights cannot carry over.
    Returns what was copied, partly copied and left new, for the log."""
    from omniseg.segmenter import DEFAULT_MODEL_DIR

    directory = DEFAULT_MODEL_DIR if str(source) == "default" else Path(source)
    trained = OpenSegModel.from_pretrained(directory)
    if trained.config.text_encoder != model.config.text_encoder or trained.config.arch != model.config.arch:
        raise InputError(
            f"init_from {directory}: a {trained.config.arch} model for {trained.config.text_encoder} cannot start "
            f"a {model.config.arch} model for {model.config.text_encoder}"
        )
    source_state = trained.state_dict()
    report: dict[str, list[str]] = {"copied": [], "partly": [], "new": []}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in source_state:
                report["new"].append(name)
                continue
            value = source_state[name]
            if value.shape == tensor.shape:
                tensor.copy_(value)
                report["copied"].append(name)
            elif name == "queries" and value.shape[1:] == tensor.shape[1:]:
                rows = min(value.shape[0], tensor.shape[0])
                tensor[:rows].copy_(value[:rows])
                report["partly"].append(f"{name} ({rows} of {tensor.shape[0]} rows)")
            else:
                raise InputError(
                    f"init_from {directory}: {name} has shape {tuple(value.shape)} there and {tuple(tensor.shape)} "
                    "here; keep the model settings of the source (only num_queries may differ)"
                )
    return report


def _truncate_log(log_path: Path, step: int) -> None:
    """After a crash the log may run past the checkpoint; drop those lines so steps never repeat."""
    if not log_path.is_file():
        return
    kept = [
        line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    atomic_write_text(log_path, "".join(line + "\n" for line in kept))


def _distributed() -> tuple[int, int]:
    """(rank, world size); under torchrun, joins the gloo process group (CPU)."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients as one flat tensor: each process then holds the mean over the
    global batch (equal shares), so every process applies the same update."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Train (or resume) the run in cfg.out_dir. Under torchrun every process takes its share of
    each global batch (batch_size is global); rank 0 writes the log, checkpoints and the model."""
    import torch.distributed as dist

    rank, world = _distributed()
    if cfg.batch_size % world:
        raise InputError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    torch.set_num_threads(max(1, cfg.threads // world))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    model = OpenSegModel(cfg.model)
    model.train()
    optimizer = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, optimizer) if resume and (ckpt / "state.json").is_file() else 0
    if step == 0 and cfg.init_from:
        report = init_from_model(model, cfg.init_from)
        if rank == 0:
            print(
                f"started from {cfg.init_from}: {len(report['copied'])} tensors copied"
                + "".join(f"; {p}" for p in report["partly"])
                + (f"; new: {', '.join(report['new'])}" if report["new"] else "")
            )
    data = load_sources(cfg)
    log_path = out / "log.jsonl"
    if rank == 0:
        _truncate_log(log_path, step)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True, disable=rank != 0)
    start, first_step = time.time(), step
    running: dict[str, float] = {}
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(cfg, step)
        batch = draw_batch(cfg, data, step, (rank, world))
        terms = compute_losses(model, cfg, data, batch)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if world > 1:
            _average_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale_class.clamp_(0, math.log(100))
            model.logit_scale_grounding.clamp_(0, math.log(100))
        step += 1
        values = torch.stack([v.detach() for v in terms.values()])
        if world > 1:
            dist.all_reduce(values)
            values /= world
        for k, v in zip(terms, values.tolist(), strict=True):
            running[k] = running.get(k, 0.0) + v
        bar.update(1)
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            elapsed = time.time() - start
            record = {
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed": round(elapsed, 1),
                "images_per_s": round((step - first_step) * cfg.batch_size / max(elapsed, 1e-9), 3),
                **{k: round(v / n, 5) for k, v in running.items()},
            }
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['total']:.3f}")
        if step % cfg.log_every == 0:
            running = {}
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            if rank == 0:
                save_checkpoint(ckpt, model, optimizer, step)
            if world > 1:
                dist.barrier()
    bar.close()
    final = out / "model"
    if rank == 0:
        model.eval().save_pretrained(final, {"trained_steps": step})
        from omniseg.train.plot import plot_log

        plot_log(log_path, out / "loss_curve.png")
    if world > 1:
        dist.barrier()
    return final
