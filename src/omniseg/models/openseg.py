"""The native model: OpenSeg (Ghiasi et al., sec. 3 and appendix C) on an EfficientNet-Lite0 backbone.

backbone strides 4..32 -> FPN fused to stride 4 (Panoptic-FPN style) -> F_s (mask features) and
F_z (embedding features) -> T query-to-image cross-attention blocks on N learnable queries with
learnable position embeddings -> masks s = sigmoid(q . (F_s + PE)) and region embeddings
z = proj(mask-pooled F_z), L2-normalised in the text space.

The decoder uses depthwise-separable convolutions: a dense 3x3 conv at stride 4 would cost more
than the whole backbone on a 2-core CPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from omniseg.atomic import atomic_write_bytes, atomic_write_text
from omniseg.errors import MissingResourceError, ModelLoadError
from omniseg.models.backbone import FEATURE_CHANNELS, IMAGE_MEAN, IMAGE_STD, EfficientNetLite0, load_pretrained_backbone
from omniseg.recognition.known import KnownConcepts, read_known
from omniseg.recognition.recognizer import FrozenImageNetHead

IMAGE_MEAN_T = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
IMAGE_STD_T = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# The class names a model was trained on (its card's training data): "seen" names keep the trained
# score alone in the frozen recognizer's fusion and are the known concepts "unknown" is judged against.
TRAINED_CLASSES_NAME = "trained_classes.json"
_CONFIG_LIMITS = {"pos_grid": 512, "num_blocks": 64, "trainable_backbone_from": 16}
# Each field is bounded, but their product is not: 4096-wide blocks x 64 with a 512 grid is 7.7 G
# parameters (31 GB). 100 M parameters (400 MB in float32) is 60 times the default model.
MAX_PARAMETERS = 100_000_000


@dataclass
class OpenSegConfig:
    fpn_dim: int = 96
    feature_dim: int = 128  # dimension of F_s, F_z and the queries
    num_queries: int = 48
    num_blocks: int = 3  # T in appendix C
    num_heads: int = 4
    ffn_dim: int = 256
    text_dim: int = 384  # all-MiniLM-L6-v2
    pos_grid: int = 32  # learnable PE is a grid resized to the feature map
    trainable_backbone_from: int = 11  # blocks >= this index are fine-tuned; 16 freezes all
    text_encoder: str = "all-MiniLM-L6-v2"
    # "openseg": mask proposals + region embeddings (eq. 6); "lseg": the per-pixel baseline of
    # OpenSeg ("LSeg+"): pixel embeddings classified by text embeddings, no mask proposals.
    arch: str = "openseg"
    # Per-pixel text-space embeddings (ESSNet head; always on for arch "lseg").
    pixel_head: bool = False
    # Inference: logits = (1 - a) * eq. 6 + a * <class, pixel embedding>; 1 = nearest class per pixel.
    pixel_weight: float = 0.0
    # The frozen recognizer (omniseg.recognition): per-region ImageNet-1k logits from the pretrained,
    # never fine-tuned copies of the backbone's trainable blocks and head; fused with the trained
    # scores for classes ImageNet covers (OMG-Seg / F-VLM), and the teacher of the distillation loss.
    recognizer: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ("openseg", "lseg"):
            raise ValueError(f"model arch must be 'openseg' or 'lseg', got {self.arch!r}")
        if self.arch == "lseg":
            self.pixel_head, self.pixel_weight = True, 1.0
        if not 0.0 <= self.pixel_weight <= 1.0 or (self.pixel_weight > 0 and not self.pixel_head):
            raise ValueError("pixel_weight must be in [0, 1] and needs pixel_head: true")

    @classmethod
    def from_dict(cls, data: dict) -> OpenSegConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_file(cls, path: Path) -> OpenSegConfig:
        """config.json -> config, checked (types and sane sizes) before any tensor is allocated."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path} must hold a JSON object, got {type(data).__name__}")
        defaults = cls()
        for f in fields(cls):
            value = data.get(f.name, getattr(defaults, f.name))
            top = _CONFIG_LIMITS.get(f.name, 4096)  # bounds what a hostile config can make us allocate
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top):
                raise ModelLoadError(f"{path}: {f.name} must be a whole number in 0..{top}, got {value!r}")
            if f.type == "str" and not isinstance(value, str):
                raise ModelLoadError(f"{path}: {f.name} must be a string, got {value!r}")
            if f.type == "bool" and not isinstance(value, bool):
                raise ModelLoadError(f"{path}: {f.name} must be true or false, got {value!r}")
            if f.type == "float" and not (_is_number(value) and math.isfinite(value)):
                raise ModelLoadError(f"{path}: {f.name} must be a finite number, got {value!r}")
        try:
            config = cls.from_dict(data)
        except ValueError as exc:  # e.g. an unknown arch, pixel_weight out of range
            raise ModelLoadError(f"{path}: {exc}") from exc
        count = config.parameter_upper_bound()
        if count > MAX_PARAMETERS:  # only then the exact count: its first meta-device build costs ~1 s
            try:
                count = config.parameter_count()
            except (ValueError, RuntimeError, AssertionError, TypeError) as exc:  # e.g. heads not dividing the dim
                raise ModelLoadError(f"{path} describes no valid model: {exc}") from exc
        if count > MAX_PARAMETERS:
            raise ModelLoadError(
                f"{path} asks for {count:,} parameters (limit {MAX_PARAMETERS:,}): refused before allocating"
            )
        return config

    def parameter_upper_bound(self) -> int:
        """A cheap bound that is never below ``parameter_count()`` (tests/test_model_config.py checks it):
        every term of the model's parameters, with generous constants. A config under the limit by this
        bound needs no meta-device build (the first one imports torch machinery for about a second,
        which every CLI start would pay); one above it gets the exact count."""
        d, f, t = self.feature_dim, self.fpn_dim, self.text_dim
        blocks = 10 * (d * d + d * self.ffn_dim) * (self.num_blocks + 4)
        fpn = 600 * f + 8 * d * (f + t) + 20 * d
        extras = d * self.pos_grid**2 + self.num_queries * d + 2 * t * t + 1000
        backbones = 20_000_000  # EfficientNet-Lite0 (4.7 M) and the recognizer's copy of its tail, with room
        return blocks + fpn + extras + backbones

    def parameter_count(self) -> int:
        """The parameters a model of this config has, counted on torch's meta device: nothing is
        allocated, and the count cannot drift from the model's definition."""
        with torch.device("meta"):
            model = OpenSegModel(self, backbone=EfficientNetLite0())
        return sum(p.numel() for p in model.parameters())


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SeparableConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.GroupNorm(8, c_out),
            nn.ReLU(inplace=True),
        )


class FPN(nn.Module):
    """Top-down FPN, then every level upsampled to stride 4 and summed (Panoptic FPN fusion)."""

    def __init__(self, in_channels: tuple[int, ...], dim: int, out_dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.fuse = nn.ModuleList(SeparableConv(dim, out_dim) for _ in in_channels)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        laterals = [lat(f) for lat, f in zip(self.lateral, feats, strict=False)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        size = laterals[0].shape[-2:]
        fused = [fuse(lat) for fuse, lat in zip(self.fuse, laterals, strict=True)]
        return torch.stack(
            [
                h if h.shape[-2:] == size else F.interpolate(h, size=size, mode="bilinear", align_corners=False)
                for h in fused
            ]
        ).sum(0)


class CrossAttentionBlock(nn.Module):
    """Queries attend to position-augmented image features, then an MLP (appendix C, Fig. 6)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.norm_q(q), keys, values, need_weights=False)[0]
        return q + self.ffn(self.norm_ffn(q))


class OpenSegModel(nn.Module):
    def __init__(self, config: OpenSegConfig | None = None, backbone: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        self.config = config = config or OpenSegConfig()
        self.backbone = backbone if backbone is not None else load_pretrained_backbone()
        d = config.feature_dim
        self.fpn = FPN(FEATURE_CHANNELS, config.fpn_dim, d)
        if config.arch == "openseg":  # construction order kept: the same seed gives the same init as before
            self.mask_features = nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))  # F_s
        self.embed_features = nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))  # F_z
        if config.arch == "openseg":
            self.pos_embed = nn.Parameter(torch.randn(1, d, config.pos_grid, config.pos_grid) * 0.02)
            # Unit-scale queries (as nn.Embedding): at 0.02 the cross-attention update, identical for all
            # queries at the start, swamps their differences and every query collapses to the same mask.
            self.queries = nn.Parameter(torch.randn(config.num_queries, d))
            self.blocks = nn.ModuleList(
                CrossAttentionBlock(d, config.num_heads, config.ffn_dim) for _ in range(config.num_blocks)
            )
            self.query_norm = nn.LayerNorm(d)
            self.mask_embed = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, d))
            self.objectness = nn.Linear(d, 1)
            self.text_proj = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, config.text_dim))
        # Learnable temperatures (log 1/tau): grounding loss (eq. 2) and the classification terms.
        self.logit_scale_grounding = nn.Parameter(torch.tensor(2.3))
        self.logit_scale_class = nn.Parameter(torch.tensor(2.3))
        if config.pixel_head:
            # Pixel embedding e' = W^T normalise(proj(F)). The ESS class embeddings are W t_c for text
            # embeddings t_c, so <W t_c, e> = <t_c, W^T e>: inference needs only the raw text side.
            self.pixel_embed = nn.Sequential(
                nn.Conv2d(d, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, config.text_dim, 1)
            )
            self.class_map = nn.Parameter(torch.eye(config.text_dim))
        self._freeze_backbone()
        # Copied now, before any fine-tuned weights are loaded: the pretrained blocks, never saved.
        self.recognizer = (
            FrozenImageNetHead(self.backbone, config.trainable_backbone_from)
            if config.recognizer and config.arch == "openseg"
            else None
        )

    # -- parameters -------------------------------------------------------------------------
    def _frozen_backbone_names(self) -> set[str]:
        first = self.config.trainable_backbone_from
        frozen = set()
        for name, _ in self.backbone.named_parameters():
            parts = name.split(".")
            if parts[0] == "_blocks" and int(parts[1]) >= first:
                continue
            frozen.add(name)
        return frozen

    def _freeze_backbone(self) -> None:
        frozen = self._frozen_backbone_names()
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(name not in frozen)

    def train(self, mode: bool = True) -> OpenSegModel:
        super().train(mode)
        # BatchNorm statistics of the pretrained backbone stay fixed: batches here are tiny.
        self.backbone.eval()
        return self

    # -- forward ----------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B,3,H,W] RGB in 0..1 -> fused features F at stride 4."""
        return self._features(images)[0]

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused features F at stride 4, and the output of the last frozen backbone block (the
        recognizer's input: the part of the backbone both paths share)."""
        x = (images - IMAGE_MEAN_T.to(images)) / IMAGE_STD_T.to(images)
        first = self.config.trainable_backbone_from
        bb = self.backbone
        with torch.set_grad_enabled(torch.is_grad_enabled() and first == 0):
            h = F.relu6(bb._bn0(bb._conv_stem(x)))
        feats = []
        shared = h
        for i, block in enumerate(bb._blocks):
            if i == first:
                shared = h
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= first):
                h = block(h)
            if i in (2, 4, 10, 15):
                feats.append(h)
        if first >= len(bb._blocks):  # nothing fine-tuned: the recognizer starts after the last block
            shared = h
        return self.fpn(tuple(feats)), shared

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns mask logits [B,N,H/4,W/4], region embeddings [B,N,text_dim] (unit norm),
        objectness logits [B,N] and pixel features [B,feature_dim,H/4,W/4] (F_z, unit norm per pixel:
        the features the region embeddings are pooled from, for example-based tasks); with the pixel
        head also pixel embeddings [B,text_dim,H/4,W/4] in the text space; with the recognizer the
        frozen ImageNet logits of each region [B,N,1000]. arch "lseg" has N = 0."""
        feats, shared = self._features(images)
        b, d, h, w = feats.shape
        f_z = self.embed_features(feats)
        extra = {"pixel_features": F.normalize(f_z, dim=1)}
        if self.config.pixel_head:
            e = F.normalize(self.pixel_embed(feats), dim=1)
            extra["pixel_embeddings"] = torch.einsum("ed,bdhw->behw", self.class_map.T, e)
        if self.config.arch == "lseg":
            return {
                "mask_logits": feats.new_zeros(b, 0, h, w),
                "embeddings": feats.new_zeros(b, 0, self.config.text_dim),
                "objectness": feats.new_zeros(b, 0),
                **extra,
            }
        pe = F.interpolate(self.pos_embed, size=(h, w), mode="bilinear", align_corners=False)
        f_s = self.mask_features(feats) + pe
        keys = f_s.flatten(2).transpose(1, 2)  # [B, HW, d]
        values = feats.flatten(2).transpose(1, 2)
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        for block in self.blocks:
            q = block(q, keys, values)
        q = self.query_norm(q)
        mask_logits = torch.einsum("bnd,bdhw->bnhw", self.mask_embed(q), f_s) / d**0.5
        masks = mask_logits.sigmoid()
        pooled = torch.einsum("bnhw,bdhw->bnd", masks, f_z) / masks.sum((2, 3)).clamp(min=1e-6).unsqueeze(-1)
        z = F.normalize(self.text_proj(pooled), dim=-1)
        if self.recognizer is not None:
            with torch.no_grad():  # frozen: a teacher in training, a second opinion at inference
                head = self.recognizer.head_features(shared)
                extra["imagenet_logits"] = self.recognizer.region_logits(head, masks.detach())
                extra["imagenet_pixel_logits"] = self.recognizer.pixel_logits(head)
        return {
            "mask_logits": mask_logits,
            "embeddings": z,
            "objectness": self.objectness(q).squeeze(-1),
            **extra,
        }

    # -- persistence (safetensors + JSON config; never unpickle) -----------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything except the frozen pretrained backbone, which ships in its own package."""
        frozen = {f"backbone.{n}" for n in self._frozen_backbone_names()}
        frozen |= {k for k in self.state_dict() if k.startswith("recognizer.")}  # pretrained, from its package
        frozen |= {
            f"backbone.{n}"
            for n, _ in self.backbone.named_buffers()
            if not _buffer_in_trainable_block(n, self.config.trainable_backbone_from)
        }
        return {k: v for k, v in self.state_dict().items() if k not in frozen}

    def save_pretrained(self, directory: str | Path, extra_config: dict | None = None) -> None:

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
            for k, v in self.trainable_state_dict().items()
        }
        atomic_write_bytes(directory / WEIGHTS_NAME, save(tensors))
        atomic_write_text(
            directory / CONFIG_NAME, json.dumps({**asdict(self.config), **(extra_config or {})}, indent=2)
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> OpenSegModel:
        """Load a directory written by ``save_pretrained``: config.json + model.safetensors.

        Only safetensors is read (a pickle named model.safetensors is refused without being
        unpickled). MissingResourceError when the files are absent; ModelLoadError when they are
        corrupt, truncated or invalid, or when the config does not match the weights.
        """

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise MissingResourceError(f"no model at {directory}: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
        config = OpenSegConfig.from_file(cfg_path)
        try:
            tensors = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{w_path} is not a valid safetensors file (corrupt or truncated?): {exc}") from exc
        not_finite = next(
            (k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())), None
        )
        if not_finite is not None:  # NaN weights give one class over every pixel, silently
            raise ModelLoadError(f"{w_path} holds NaN or infinite values (tensor {not_finite}): the model is damaged")
        try:
            model = cls(config)
        except (ValueError, RuntimeError, AssertionError, TypeError) as exc:  # e.g. heads not dividing the dim
            raise ModelLoadError(f"{cfg_path} describes no valid model: {exc}") from exc
        state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even with strict=False
            first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
            raise ModelLoadError(f"weights at {w_path} do not match {cfg_path}: {first.strip()}") from exc
        expected = set(model.trainable_state_dict())
        if unexpected or expected & set(missing):
            raise ModelLoadError(
                f"weights at {w_path} do not match {cfg_path} (missing "
                f"{sorted(expected & set(missing))[:3]}, unexpected {unexpected[:3]})"
            )
        return model.eval()


def _buffer_in_trainable_block(name: str, first: int) -> bool:
    parts = name.split(".")
    return parts[0] == "_blocks" and int(parts[1]) >= first


def read_known_concepts(directory: Path) -> KnownConcepts | None:
    """The concepts a model directory says it was trained on (``trained_classes.json``: names and their
    WordNet relatives, omniseg.recognition.known); None when the file is absent (every class is then
    unseen, and no default "unknown" threshold applies)."""
    path = Path(directory) / TRAINED_CLASSES_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = data["classes"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path} is not a valid trained-classes file: {exc.__class__.__name__}") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ModelLoadError(f"{path}: 'classes' must be a non-empty list of names")
    return read_known(data)
