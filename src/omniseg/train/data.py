"""Training data: the datasets of a config loaded once (images, masks, class prompts, caption
words), their sampling weights, and the batches drawn from them.

The sampler is a pure function of (seed, step), so a resumed run draws the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from omniseg.data.dataset import open_dataset
from omniseg.data.segments import ClassRoles, class_roles, instance_path, read_instance_map
from omniseg.data.transforms import random_crop_flip
from omniseg.data.uniform import IGNORE, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.recognition.concepts import imagenet_names
from omniseg.text.encoder import default_text_encoder
from omniseg.train.config import TrainConfig
from omniseg.train.words import image_words, keep_words
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


def source_weights(cfg: TrainConfig, sizes: list[int]) -> np.ndarray:
    w = np.asarray(
        [
            spec.weight if spec.weight is not None else (spec.ratio * n if spec.ratio is not None else 1.0)
            for spec, n in zip(cfg.datasets, sizes, strict=True)
        ],
        dtype=np.float64,
    )
    return w / w.sum()


def load_sources(cfg: TrainConfig) -> TrainData:
    encoder = default_text_encoder()
    sources: list[TrainSource] = []
    words: dict[str, int] = {}
    union: dict[str, int] = {}
    for spec in cfg.datasets:
        ds = open_dataset(spec.path)
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
    word_list, union_list = sorted(words, key=words.__getitem__), sorted(union, key=union.__getitem__)
    dim = sources[0].text.shape[1]
    word_text = torch.from_numpy(encoder.encode(word_list)) if word_list else torch.zeros(0, dim)
    union_text = F.normalize(torch.from_numpy(encoder.encode(union_list)), dim=-1)
    imagenet_text = torch.from_numpy(encoder.encode(list(imagenet_names()))) if cfg.losses.distill > 0 else None
    sizes = [len(s.images) for s in sources]
    return TrainData(sources, source_weights(cfg, sizes), word_text, union_text, imagenet_text)


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
