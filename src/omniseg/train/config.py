"""Training configuration: a dataclass on disk as YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from omniseg.errors import InputError
from omniseg.models.openseg import OpenSegConfig


def _build(kind: type, values: dict, where: str):
    """Dataclass from a mapping, naming the unknown key instead of raising TypeError."""
    if not isinstance(values, dict):
        raise InputError(f"{where} must be a mapping")
    unknown = set(values) - {f.name for f in fields(kind)}
    if unknown:
        raise InputError(f"unknown keys in {where}: {', '.join(sorted(unknown))}")
    try:
        return kind(**values)
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from exc


TASKS = ("semantic", "instance", "panoptic", "binary", "caption", "pseudo")


@dataclass
class DatasetSpec:
    """One training source. Sampling: ``weight`` is its share of the batches (SegGPT's dataset
    weights); ``ratio`` instead makes its share proportional to ratio x number of images (MQ-Former
    Table G's upsampling ratios). Give at most one; neither means weight 1.

    task: what the source supervises. semantic: one segment per class present (class names in the
    text space); instance: one segment per object (instances/); panoptic: objects + one segment per
    stuff class; binary: foreground/background sets, segments of the non-void classes only;
    caption: images + captions.json only (grounding loss); pseudo: class-agnostic masks written by
    ``omniseg pseudo-label`` (mask losses, plus grounding when captions.json is there).
    loss_weight scales this source's mask terms (segmentation, mask BCE, objectness; seeds/003
    Table 8 sets it to 0 for pseudo-labelled data). captions: use captions.json when present.
    """

    path: str
    weight: float | None = None
    ratio: float | None = None
    val_fraction: float = 0.2
    task: str = "semantic"
    loss_weight: float = 1.0
    captions: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"dataset {self.path}: unknown task {self.task!r} (use one of {', '.join(TASKS)})")
        if self.weight is not None and self.ratio is not None:
            raise InputError(f"dataset {self.path}: give weight or ratio, not both")
        if (self.weight is not None and self.weight <= 0) or (self.ratio is not None and self.ratio <= 0):
            raise InputError(f"dataset {self.path}: weight and ratio must be positive")


@dataclass
class LossWeights:
    segmentation: float = 1.0  # eq. 1, Dice best match
    mask_bce: float = 2.0  # BCE of each segment's best-matched mask; keeps sigmoids out of saturation
    grounding: float = 0.5  # eq. 2-4, image-level class names as words
    region_class: float = 1.0  # matched region vs its class name, over the dataset vocabulary
    pixel_class: float = 1.0  # per-pixel CE on the eq. 6 logits
    objectness: float = 0.2  # matched queries are objects
    ess: float = 0.0  # ESS head (seeds/004): pixel vs class embeddings with k nearest negative classes
    ess_reg: float = 0.1  # ESS regularisation of the learned class map (norms, spread)
    # Regions pulled toward the text embedding of what the frozen ImageNet head sees in them
    # (Detic-style learning from image-level labels; losses.distillation_loss). Needs model.recognizer.
    distill: float = 0.0


@dataclass
class TrainConfig:
    datasets: list[DatasetSpec]
    out_dir: str = "runs/default"
    steps: int = 4000
    batch_size: int = 8
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    crop: int = 256
    short_side: int = 288
    scale_range: tuple[float, float] = (0.7, 1.3)
    seed: int = 0
    split_seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    threads: int = 2
    one_to_one_matching: bool = True  # eq. 1's max restricted to distinct queries (see losses.py)
    keep_prob: float = 0.75  # kp: each caption word is kept with this probability (seeds/003 appendix H)
    ess_negatives: int = 8  # k nearest negative classes per pixel (FAISS)
    ess_pixels: int = 256  # labelled pixels sampled per image for the ESS loss
    losses: LossWeights = field(default_factory=LossWeights)
    model: OpenSegConfig = field(default_factory=OpenSegConfig)
    # Fine-tuning: start from this trained model ("default" = the embedded one, or a model directory)
    # instead of the ImageNet backbone; see omniseg.train.loop.init_from_model.
    init_from: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"training config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise InputError(f"training config {path} is not UTF-8 text") from exc
        except yaml.YAMLError as exc:
            raise InputError(f"training config {path} is not valid YAML: {exc.__class__.__name__}") from exc
        if not isinstance(data, dict):
            raise InputError(f"training config {path} must be a mapping of keys to values")
        if not data.get("datasets"):
            raise InputError(f"training config {path} lists no datasets")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
        data["datasets"] = [
            _build(DatasetSpec, d if isinstance(d, dict) else {"path": str(d)}, f"{path}: datasets")
            for d in data["datasets"]
        ]
        data["losses"] = _build(LossWeights, data.get("losses") or {}, f"{path}: losses")
        data["model"] = _build(OpenSegConfig, data.get("model") or {}, f"{path}: model")
        if "scale_range" in data:
            data["scale_range"] = tuple(data["scale_range"])
        base = path.parent  # relative paths in a config are relative to the config file
        for spec in data["datasets"]:
            if not Path(spec.path).is_absolute():
                spec.path = str((base / spec.path).resolve())
        init = data.get("init_from")
        if init is not None and init != "default" and not Path(str(init)).is_absolute():
            data["init_from"] = str((base / str(init)).resolve())
        if not Path(data.get("out_dir", cls.out_dir)).is_absolute():
            data["out_dir"] = str((base / data.get("out_dir", cls.out_dir)).resolve())
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
