"""SAM 3 (transformers ``Sam3Model``) as a concept-segmentation source: a whole vocabulary per call.

SAM 3 answers one noun phrase (or box exemplar) per forward pass. Here the 850M-parameter vision
encoder runs once per image, each prompt's text tokens are encoded once and cached (keyed by the
text), and the DETR encoder/decoder and mask head run over batches of prompts against that single
image encoding (the encoding is broadcast over the batch). Instances come out as SAM 3 gives
them: overlapping masks allowed, equal to transformers' ``post_process_instance_segmentation``.

Exemplars: a box on the target image is SAM 3's own box prompt. An exemplar from ANOTHER image
goes through SAM 3's geometry encoder on that image: its output tokens (ROI-pooled features of the
example's box, its position and label, after cross-attending to the example image) are a prompt
that no longer depends on the example image, and are given to the target image's DETR
encoder/decoder in place of the box prompt. On the example's own image this is exactly the box
prompt (tested), so across images it is the same tokens, read against another image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from omniseg.backends.device import resolve_device
from omniseg.backends.hub import load_tokenizer, open_checkpoint
from omniseg.backends.roi_align import install_for_sam3
from omniseg.backends.sam3_processing import (
    ImageSpec,
    binary_masks,
    boxes_to_prompt,
    mask_box,
    preprocess_image,
    query_scores,
    scale_boxes,
    tokenize,
)
from omniseg.concepts import Instances
from omniseg.errors import InputError, MissingResourceError
from omniseg.images import ImageLike, load_image

VISUAL = "visual"  # the text Sam3Processor pairs with box-only prompts
# Sam3Model first shipped in transformers 5.0.0rc0 (2025-12-01); 5.0.0 (2026-01-26) is the first final
# release with it, and no 4.x release has it (4.57.6, the last, has no models/sam3). Checked against the
# wheels on PyPI; omniseg is tested with 5.24.0.
SAM3_TRANSFORMERS = "5.0.0"
TEXT_CACHE_SIZE = 4096  # texts whose prompt tokens stay cached (~32 kB each at SAM 3's full size)


def sam3_modeling() -> SimpleNamespace:
    """What omniseg uses of transformers' SAM 3 modeling (deferred: transformers takes seconds to
    import), or a one-line MissingResourceError naming the release that has it. Imported by name from
    the module: through the package's lazy attribute, a missing optional backend of the package
    (torchvision) turns the module into a placeholder."""
    try:
        from transformers.models.sam3.modeling_sam3 import Sam3Model, box_cxcywh_to_xyxy, inverse_sigmoid
    except ImportError:
        try:
            from transformers import __version__ as installed
        except ImportError:
            installed = "none"
        raise MissingResourceError(
            f"SAM 3 needs transformers >= {SAM3_TRANSFORMERS} (Sam3Model; no 4.x release has it); "
            f"installed: {installed}: pip install -U 'transformers>={SAM3_TRANSFORMERS}'"
        ) from None
    return SimpleNamespace(Sam3Model=Sam3Model, box_cxcywh_to_xyxy=box_cxcywh_to_xyxy, inverse_sigmoid=inverse_sigmoid)


@dataclass
class ImageEncoding:
    """The vision encoder's output for one image (FPN features and their position encodings)."""

    fpn_hidden_states: tuple[torch.Tensor, ...]
    fpn_position_encoding: tuple[torch.Tensor, ...]
    image_size: tuple[int, int]  # (H, W) of the original image

    def broadcast(self, batch: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """FPN features and position encodings for ``batch`` prompts (views, no copy of the encoder's work)."""
        return (
            tuple(f.expand(batch, -1, -1, -1) for f in self.fpn_hidden_states),
            tuple(p.expand(batch, -1, -1, -1) for p in self.fpn_position_encoding),
        )


@dataclass
class Prompt:
    """What SAM 3's DETR encoder/decoder read as one prompt: tokens [L,D] and their validity [L]."""

    tokens: torch.Tensor
    mask: torch.Tensor

    @staticmethod
    def stack(prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to the longest prompt (padding masked out) -> tokens [P,L,D], mask [P,L] (bool)."""
        length = max(p.tokens.shape[0] for p in prompts)
        tokens = prompts[0].tokens.new_zeros(len(prompts), length, prompts[0].tokens.shape[1])
        mask = torch.zeros(len(prompts), length, dtype=torch.bool, device=tokens.device)
        for i, p in enumerate(prompts):
            tokens[i, : len(p.tokens)] = p.tokens
            mask[i, : len(p.mask)] = p.mask
        return tokens, mask


@dataclass
class RawOutputs:
    """SAM 3's outputs for P prompts on one image (what the post-processing reads)."""

    pred_logits: torch.Tensor  # [P,Q]
    presence_logits: torch.Tensor  # [P,1]
    pred_boxes: torch.Tensor  # [P,Q,4] normalised xyxy
    pred_masks: torch.Tensor | None  # [P,Q,h,w] logits (zeros for prompts decoded without masks; None: none)


class Sam3Backend:
    """SAM 3 concept segmentation over a vocabulary; see the module docstring.

    prompt_batch: prompts decoded together against one image encoding (memory ~ linear in it).
    threshold / mask_threshold: the defaults of transformers' post_process_instance_segmentation.
    """

    name = "sam3"

    def __init__(
        self,
        spec: str | Path,
        device: str | torch.device = "cpu",
        prompt_batch: int = 16,
        threshold: float = 0.3,
        mask_threshold: float = 0.5,
    ) -> None:
        # transformers' class by its module's name (sam3_modeling), then the shared checkpoint preamble
        opened = open_checkpoint(spec, sam3_modeling().Sam3Model, "SAM 3", device)
        self.device = opened.device
        self.directory: Path | None = opened.directory
        tokenizer = load_tokenizer(opened.directory, "SAM 3")
        spec_ = ImageSpec.from_checkpoint(opened.directory, int(opened.model.config.vision_config.image_size))
        self._setup(opened.model, tokenizer, spec_, prompt_batch, threshold, mask_threshold)

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        device: str | torch.device = "cpu",
        prompt_batch: int = 16,
        threshold: float = 0.3,
        mask_threshold: float = 0.5,
    ) -> Sam3Backend:
        """An adapter around an already built Sam3Model (e.g. the benchmark's random full-size model)."""
        self = cls.__new__(cls)
        self.device = resolve_device(device)
        self.directory = None
        spec = ImageSpec((int(model.config.vision_config.image_size),) * 2)
        self._setup(model.eval(), tokenizer, spec, prompt_batch, threshold, mask_threshold)
        return self

    def _setup(
        self, model: Any, tokenizer: Any, spec: ImageSpec, prompt_batch: int, threshold: float, mask_threshold: float
    ) -> None:
        if prompt_batch < 1:
            raise InputError(f"prompt_batch must be >= 1, got {prompt_batch}")
        install_for_sam3()
        self._modeling = sam3_modeling()
        self.model: Any = model.to(self.device)
        self.tokenizer = tokenizer
        self.image_spec = spec
        self.text_length = min(32, int(model.config.text_config.max_position_embeddings))
        self.prompt_batch = prompt_batch
        self.threshold = threshold
        self.mask_threshold = mask_threshold
        self._text_cache: OrderedDict[str, Prompt] = OrderedDict()  # LRU of TEXT_CACHE_SIZE texts
        self._text_lock = threading.Lock()

    # ------------------------------------------------------------------------------- encoders
    @torch.inference_mode()
    def encode_image(self, image: ImageLike) -> ImageEncoding:
        """Runs the vision encoder (the expensive part) once; every prompt on this image reuses it."""
        array = load_image(image)
        pixels = preprocess_image(array, self.image_spec, self.device)
        out = self.model.get_vision_features(pixel_values=pixels)
        return ImageEncoding(
            tuple(out.fpn_hidden_states), tuple(out.fpn_position_encoding), (array.shape[0], array.shape[1])
        )

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> list[Prompt]:
        """Prompt tokens of each text (in batches of 64), not cached: for callers that keep them."""
        prompts: list[Prompt] = []
        for start in range(0, len(texts), 64):
            chunk = list(texts[start : start + 64])
            ids, attention = tokenize(self.tokenizer, chunk, self.device, self.text_length)
            features = self.model.get_text_features(input_ids=ids, attention_mask=attention).pooler_output
            prompts.extend(Prompt(features[i], attention[i].bool()) for i in range(len(chunk)))
        return prompts

    def text_prompts(self, texts: Sequence[str]) -> list[Prompt]:
        """Prompt tokens of each text, encoded once per text and kept in an LRU cache of
        TEXT_CACHE_SIZE texts (a server answering many vocabularies does not grow without bound)."""
        with self._text_lock:
            found = {t: self._text_cache[t] for t in texts if t in self._text_cache}
            for text in found:
                self._text_cache.move_to_end(text)
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        found.update(zip(todo, self.encode_texts(todo), strict=True))
        with self._text_lock:
            for text in todo:
                self._text_cache[text] = found[text]
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return [found[t] for t in texts]

    @torch.inference_mode()
    def box_prompt(
        self,
        encoding: ImageEncoding,
        boxes: Sequence[tuple[float, float, float, float]],
        labels: Sequence[bool] | None = None,
        text: str = VISUAL,
    ) -> Prompt:
        """Text tokens + SAM 3's geometry tokens for pixel-xyxy ``boxes`` on ``encoding``'s image.

        labels: True = positive exemplar (default), False = negative. The tokens can be decoded
        against this image or, as an exemplar from another image, against any other encoding.
        """
        if not boxes:
            raise InputError("an exemplar prompt needs at least one box")
        box = boxes_to_prompt(torch.tensor(boxes, dtype=torch.float32, device=self.device), encoding.image_size)
        positive = labels if labels is not None else [True] * len(boxes)
        label = torch.tensor([[int(bool(v)) for v in positive]], dtype=torch.long, device=self.device)
        geometry = self.model.geometry_encoder(
            box_embeddings=box[None],
            box_mask=torch.ones_like(label, dtype=torch.bool),
            box_labels=label,
            img_feats=encoding.fpn_hidden_states[:-1],  # all levels but the last, as Sam3Model.forward
            img_pos_embeds=encoding.fpn_position_encoding[:-1],
        )
        (words,) = self.text_prompts([text])
        tokens = torch.cat([words.tokens, geometry.last_hidden_state[0]])
        return Prompt(tokens, torch.cat([words.mask, geometry.attention_mask[0].bool()]))

    def exemplar_prompt(
        self, example: ImageLike, mask: np.ndarray, text: str = VISUAL, encoding: ImageEncoding | None = None
    ) -> Prompt:
        """A prompt from an example image and a binary mask of one object in it (its box is the exemplar)."""
        encoding = encoding or self.encode_image(example)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != encoding.image_size:
            raise InputError(f"example mask {mask.shape} does not match its image {encoding.image_size}")
        return self.box_prompt(encoding, [mask_box(mask)], text=text)

    # ------------------------------------------------------------------------------- decoding
    @torch.inference_mode()
    def decode(self, encoding: ImageEncoding, prompts: Sequence[Prompt], threshold: float | None = None) -> RawOutputs:
        """SAM 3's DETR encoder/decoder and mask head for the prompts, together, on one image encoding.

        The steps of ``Sam3Model.forward`` with the prompt tokens given, split in two: scores and boxes
        for every prompt, then the mask head (a pixel decoder per prompt: most of a prompt's cost) only
        for prompts with a query scoring above ``threshold`` (None: all). Prompts without one give no
        instance whatever their masks, so the result is the same; for a large vocabulary of which an
        image shows a few names, most mask heads are skipped.
        """
        tokens, mask = Prompt.stack(prompts)
        all_features, all_positions = encoding.broadcast(len(prompts))
        features, positions = all_features[:-1], all_positions[:-1]
        model, modeling = self.model, self._modeling
        encoded = model.detr_encoder(
            vision_features=[features[-1]], text_features=tokens, vision_pos_embeds=[positions[-1]], text_mask=mask
        )
        decoded = model.detr_decoder(
            vision_features=encoded.last_hidden_state,
            text_features=encoded.text_features,
            vision_pos_encoding=encoded.pos_embeds_flattened,
            text_mask=mask,
            spatial_shapes=encoded.spatial_shapes,
        )
        queries = decoded.intermediate_hidden_states[-1:]  # the last decoder layer is the prediction
        offsets = model.detr_decoder.box_head(queries)
        reference = modeling.inverse_sigmoid(decoded.reference_boxes[-1:])
        boxes = modeling.box_cxcywh_to_xyxy((reference + offsets).sigmoid())[-1]
        logits = model.dot_product_scoring(
            decoder_hidden_states=queries, text_features=encoded.text_features, text_mask=mask
        ).squeeze(-1)[-1]
        presence = decoded.presence_logits[-1]
        wanted = torch.ones(len(prompts), dtype=torch.bool, device=tokens.device)
        if threshold is not None:
            wanted = (query_scores(logits, presence) > threshold).any(-1)
        pred_masks = None
        if bool(wanted.any()):
            pick = wanted.nonzero().flatten()
            computed = model.mask_decoder(
                decoder_queries=queries[-1][pick],
                backbone_features=[f[pick] for f in features],
                encoder_hidden_states=encoded.last_hidden_state[pick],
                prompt_features=tokens[pick],
                prompt_mask=mask[pick],
            ).pred_masks
            pred_masks = computed.new_zeros(len(prompts), *computed.shape[1:])
            pred_masks[pick] = computed
        return RawOutputs(logits, presence, boxes, pred_masks)

    def instances(
        self,
        raw: RawOutputs,
        image_size: tuple[int, int],
        labels: Sequence[int],
        threshold: float | None = None,
        mask_threshold: float | None = None,
    ) -> Instances:
        """Post-processing (sam3_processing) of P prompts' outputs; ``labels`` [P] names each prompt's class."""
        threshold = self.threshold if threshold is None else threshold
        mask_threshold = self.mask_threshold if mask_threshold is None else mask_threshold
        scores = query_scores(raw.pred_logits, raw.presence_logits)  # [P,Q]
        nothing = scores.new_zeros(0, 1, 1)
        parts = []
        for p, label in enumerate(labels):
            keep = scores[p] > threshold
            logits = raw.pred_masks[p][keep] if raw.pred_masks is not None else nothing
            parts.append(
                Instances(
                    masks=binary_masks(logits, image_size, mask_threshold),
                    scores=scores[p][keep],
                    labels=torch.full((int(keep.sum()),), int(label), dtype=torch.long, device=scores.device),
                    boxes=scale_boxes(raw.pred_boxes[p][keep], image_size),
                    image_size=image_size,
                )
            )
        return Instances.cat(parts, image_size, self.device)

    def run(
        self,
        encoding: ImageEncoding,
        prompts: Sequence[Prompt],
        labels: Sequence[int] | None = None,
        threshold: float | None = None,
        mask_threshold: float | None = None,
    ) -> Instances:
        """Decode the prompts in batches of ``prompt_batch`` and post-process; labels default to 0..P-1."""
        labels = list(range(len(prompts))) if labels is None else list(labels)
        if len(labels) != len(prompts):
            raise InputError(f"{len(prompts)} prompts but {len(labels)} labels")
        parts = []
        cut = self.threshold if threshold is None else threshold
        for start in range(0, len(prompts), self.prompt_batch):
            chunk = prompts[start : start + self.prompt_batch]
            raw = self.decode(encoding, chunk, cut)
            parts.append(
                self.instances(raw, encoding.image_size, labels[start : start + len(chunk)], threshold, mask_threshold)
            )
        return Instances.cat(parts, encoding.image_size, self.device)

    # ---------------------------------------------------------------------------- entry points
    def segment(
        self,
        image: ImageLike | ImageEncoding,
        names: Sequence[str],
        threshold: float | None = None,
        mask_threshold: float | None = None,
    ) -> Instances:
        """Instances of every name in one image: one vision encoding, cached texts, batched decoding."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise InputError("SAM 3 needs at least one non-empty concept name")
        encoding = image if isinstance(image, ImageEncoding) else self.encode_image(image)
        return self.run(encoding, self.text_prompts(names), None, threshold, mask_threshold)

    def segment_with_exemplars(
        self,
        target: ImageLike | ImageEncoding,
        examples: Sequence[tuple[ImageLike, np.ndarray]],
        text: str = VISUAL,
        threshold: float | None = None,
        mask_threshold: float | None = None,
    ) -> Instances:
        """Instances in ``target`` like the objects masked in other images: one prompt per example
        (label = the example's index), each the example's geometry tokens from its own image."""
        if not examples:
            raise InputError("give at least one (example image, mask) pair")
        prompts = [self.exemplar_prompt(image, mask, text) for image, mask in examples]
        encoding = target if isinstance(target, ImageEncoding) else self.encode_image(target)
        return self.run(encoding, prompts, None, threshold, mask_threshold)

    def incontext_mask(
        self,
        target: ImageLike | ImageEncoding,
        examples: Sequence[tuple[ImageLike, np.ndarray]],
        threshold: float | None = None,
    ) -> np.ndarray:
        """The in-context answer for one target: bool [H,W], the union of the instances found like the
        examples' masked objects (what the few-shot evaluator scores as foreground)."""
        found = self.segment_with_exemplars(target, examples, threshold=threshold)
        if len(found) == 0:
            return np.zeros(found.image_size, bool)
        return found.masks.any(0).cpu().numpy()
