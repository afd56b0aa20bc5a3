"""transformers processors whose PIL image processors need no torchvision (Grounding DINO, CLIPSeg):
built from a checkpoint directory, offline, with a one-line error when the tokenizer is unusable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniseg.errors import MissingResourceError


def load_pil_processor(directory: Path, processor_cls: Any, image_cls: Any, what: str, **defaults: Any) -> Any:
    """``processor_cls(image_processor, tokenizer)``: the image processor from preprocessor_config.json when
    the checkpoint has one, else ``image_cls(**defaults)`` (the released model's settings)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        if (directory / "preprocessor_config.json").is_file():
            images = image_cls.from_pretrained(directory, local_files_only=True)
        else:
            images = image_cls(**defaults)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise MissingResourceError(f"no usable tokenizer/processor for {what} in {directory}: {first}") from None
    return processor_cls(image_processor=images, tokenizer=tokenizer)
