"""Teacher -> pseudo-labels (OpenSeg sec. 3.3): class-agnostic segment maps of unlabeled images.

Each pixel goes to the region with the highest mask x objectness among the regions scoring at
least ``min_score``; pixels whose mask there is below 0.5, and segments smaller than ``min_area``
of the image, are 0 (unlabeled, ignored by the student's losses). Output layout (a dataset for
``task: pseudo``): images/<id>.<ext> (copies), masks/<id>.png (uint8 segment ids 1..K, 0 = none),
classes.json (placeholder names, unused by the pseudo task), pseudo_labels.json (teacher and
settings) and captions.json when the images' dataset has captions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from omniseg.atomic import atomic_save_png, atomic_write_text
from omniseg.data.uniform import IMAGE_EXTS, read_rgb
from omniseg.errors import InputError


def segment_map(regions, size: tuple[int, int], min_score: float, min_area: float) -> np.ndarray:
    """uint8 [H, W] class-agnostic segment ids (0 = unlabeled) from a teacher's Regions."""
    keep = torch.nonzero(regions.scores >= min_score).squeeze(1)
    if len(keep) == 0:
        return np.zeros(size, np.uint8)
    masks = F.interpolate(regions.masks[keep][None].float(), size=size, mode="bilinear", align_corners=False)[0]
    strength, owner = (masks * regions.scores[keep].view(-1, 1, 1)).max(0)
    inside = masks.gather(0, owner[None])[0] >= 0.5
    ids = np.where(inside.numpy(), owner.numpy() + 1, 0)
    out = np.zeros(size, np.uint8)
    next_id = 1
    for value, count in zip(*np.unique(ids[ids > 0], return_counts=True), strict=True):
        if count >= min_area * ids.size and next_id < 256:
            out[ids == value] = next_id
            next_id += 1
    return out


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        for path in sorted(entry.iterdir()) if entry.is_dir() else [entry]:
            if path.suffix.lower() in IMAGE_EXTS:
                found.append(path)
    if not found:
        raise InputError(f"no images in {folder}")
    return found


def pseudo_label_folders(
    segmenter,
    folders: Sequence[str | Path],
    out_dir: str | Path,
    min_score: float = 0.3,
    min_area: float = 0.002,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    captions_out: dict[str, list[str]] = {}
    counts, max_id = [], 0
    for folder in map(Path, folders):
        prefix = f"{folder.parent.name}_" if len(folders) > 1 else ""
        captions_file = folder.parent / "captions.json"
        captions = json.loads(captions_file.read_text()) if captions_file.is_file() else {}
        paths = _images(folder)[: limit if limit is not None else None]
        for path in tqdm(paths, desc=f"pseudo-label {folder}", disable=not progress, dynamic_ncols=True):
            rel = path.relative_to(folder).with_suffix("").as_posix()
            sid = prefix + rel.replace("/", "_")
            image = read_rgb(path)
            ids = segment_map(segmenter.regions(image), image.shape[:2], min_score, min_area)
            shutil.copyfile(path, out / "images" / f"{sid}{path.suffix.lower()}")
            atomic_save_png(out / "masks" / f"{sid}.png", ids)
            counts.append(int(ids.max()))
            max_id = max(max_id, int(ids.max()))
            if rel in captions:
                captions_out[sid] = captions[rel]
    atomic_write_text(out / "classes.json", json.dumps(["unlabeled"] + [f"segment {i}" for i in range(1, max_id + 1)]))
    if captions_out:
        atomic_write_text(out / "captions.json", json.dumps(captions_out, indent=1))
    report = {
        "teacher": segmenter.model_id,
        "folders": [str(f) for f in folders],
        "min_score": min_score,
        "min_area": min_area,
        "images": len(counts),
        "mean_segments": float(np.mean(counts)) if counts else 0.0,
    }
    atomic_write_text(out / "pseudo_labels.json", json.dumps(report, indent=2))
    return report
