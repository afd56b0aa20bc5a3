"""How results become HTTP answers: JSON (the results' own ``to_json``, COCO RLE, the page's display
map and colours) or PNG, with the warnings a request noted."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any, Literal

import numpy as np
from fastapi.responses import Response
from PIL import Image

from omniseg.formats import encode_rle, id_map_to_rgb
from omniseg.viz import class_colours

log = logging.getLogger("omniseg.server")

Format = Literal["json", "png"]


def display_json(index: np.ndarray, names: list[str], unlabeled: int) -> dict:
    """A map of indices into ``names`` as raw little-endian bytes (base64): what the page draws and
    hovers, with the colour of each index present (the overlay's colours: omniseg.viz.class_colours)."""
    dtype = "<u2" if index.dtype.itemsize > 1 else "u1"
    colours = class_colours(index, len(names), unlabeled)
    present = [int(k) for k in np.unique(index) if k != unlabeled and k < len(names)]
    return {
        "colours": {str(k): [int(c) for c in colours[k]] for k in present},
        "dtype": "uint16" if dtype == "<u2" else "uint8",
        "height": int(index.shape[0]),
        "width": int(index.shape[1]),
        "unlabeled": int(unlabeled),
        "names": names,
        "data": base64.b64encode(np.ascontiguousarray(index, dtype=dtype).tobytes()).decode("ascii"),
    }


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_response(array: np.ndarray) -> Response:
    return Response(png_bytes(array), media_type="image/png")


def mask_answer(result: Any, name: str, fmt: Format, display: bool) -> Response | dict:
    """refer / click: a binary mask (PNG 0/255, or JSON with the result's summary and the mask as COCO RLE)."""
    if fmt == "png":
        return png_response(result.mask.astype(np.uint8) * 255)
    answer = result.to_json()
    answer["mask"]["segmentation"] = encode_rle(result.mask)  # COCO RLE: the mask itself, no second request
    if display:
        answer["display"] = display_json(np.where(result.mask, 0, 255).astype(np.uint8), [name], 255)
    return answer


def with_warnings(answer: Any, notes: list[str]) -> Any:
    if not notes:
        return answer
    if isinstance(answer, dict):
        return {**answer, "warnings": notes}
    if isinstance(answer, Response):  # a header is one latin-1 line
        answer.headers["X-Omniseg-Warning"] = " | ".join(notes).encode("latin-1", "replace").decode("latin-1")
    return answer


def segment_answer(result: Any, task: str, fmt: Format, rle: bool, display: bool) -> Response | dict:
    index, names, unlabeled = result.display_map()
    if fmt == "png":
        return png_response(id_map_to_rgb(result.id_map) if task == "panoptic" else index)
    answer = {"task": task, "width": int(index.shape[1]), "height": int(index.shape[0]), **result.to_json()}
    if rle:
        if task == "semantic":
            answer["masks"] = [
                {"class": result.classes[k], "segmentation": encode_rle(result.label_map == k)}
                for k in np.unique(result.label_map)
                if k != unlabeled
            ]
        else:
            items = answer["instances"] if task == "instance" else answer["segments_info"]
            for k, item in enumerate(items):
                item["segmentation"] = encode_rle(index == k)
    if display:
        answer["display"] = display_json(index, names, unlabeled)
    return answer
