"""Training configuration: a dataclass on disk as YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from omniseg.errors import InputError
from omniseg.models.openseg import OpenSegConfig


@dataclass
class DatasetSpec:
    path: str
    weight: float = 1.0  # sampling weight (SegGPT's dataset weights / MQ-Former's upsampling ratios)
    val_fraction: float = 0.2


@dataclass
class LossWeights:
    segmentation: float = 1.0  # eq. 1, Dice best match
    grounding: float = 0.5  # eq. 2-4, image-level class names as words
    region_class: float = 1.0  # matched region vs its class name, over the dataset vocabulary
    pixel_class: float = 1.0  # per-pixel CE on the eq. 6 logits
    objectness: float = 0.2  # matched queries are objects


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
    losses: LossWeights = field(default_factory=LossWeights)
    model: OpenSegConfig = field(default_factory=OpenSegConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"training config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not data.get("datasets"):
            raise InputError(f"training config {path} lists no datasets")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
        data["datasets"] = [DatasetSpec(**d) if isinstance(d, dict) else DatasetSpec(path=str(d)) for d in data["datasets"]]
        data["losses"] = LossWeights(**data.get("losses", {}))
        data["model"] = OpenSegConfig.from_dict(data.get("model", {}))
        if "scale_range" in data:
            data["scale_range"] = tuple(data["scale_range"])
        base = path.parent  # relative paths in a config are relative to the config file
        for spec in data["datasets"]:
            if not Path(spec.path).is_absolute():
                spec.path = str((base / spec.path).resolve())
        if not Path(data.get("out_dir", cls.out_dir)).is_absolute():
            data["out_dir"] = str((base / data.get("out_dir", cls.out_dir)).resolve())
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
