"""Run one accepted worst-case input in a fresh process and print its peak RSS (MB) as JSON.

    python tests/rss_probe.py SCENARIO WORKDIR

Used by tests/test_memory_bounds.py (one subprocess per scenario, so each peak is its own) and by
hand for the cases too slow for the suite (RELIABILITY.md, "Memory bounds").
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def peak_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the address space exec made, whereas
    ru_maxrss survives exec: a probe started from a large pytest process would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def picture(path: Path, width: int, height: int) -> Path:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    Image.fromarray(small).resize((width, height)).save(path)
    return path


def segment(image: Path, classes: str | list[str], out: Path, model: str | None = None) -> None:
    import omniseg

    seg = omniseg.load(model)
    seg.segment(image, classes=classes).save(out, image.stem)


def main(scenario: str, work: Path) -> None:
    import torch

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    side = {"image-1mp": 1000, "image-16mp": 4000, "image-64mp": 8000}
    if scenario in side:
        segment(picture(work / "big.png", side[scenario], side[scenario]), "sky,road,car,tree", work / "out")
    elif scenario == "long-names":  # the longest names accepted, a full encoding batch of them
        from omniseg.text.names import MAX_NAME_CHARS

        names = [f"{i} " + "word " * (MAX_NAME_CHARS // 5 - 2) for i in range(256)]
        assert max(map(len, names)) <= MAX_NAME_CHARS
        segment(picture(work / "p.png", 640, 480), names, work / "out")
    elif scenario == "many-names":  # the server's per-request limit
        segment(picture(work / "p.png", 640, 480), [f"class {i}" for i in range(2000)], work / "out")
    elif scenario == "config-at-bound":  # the largest model config.json may ask for
        from omniseg.models.openseg import MAX_PARAMETERS, OpenSegConfig

        config = dict(feature_dim=1024, ffn_dim=4096, num_queries=256, fpn_dim=256, num_blocks=5, pos_grid=128)
        assert OpenSegConfig(**config).parameter_count() <= MAX_PARAMETERS
        model_dir = work / "model"
        if not (model_dir / "model.safetensors").is_file():
            raise SystemExit("make the model first: rss_probe.py make-big-model WORKDIR")
        segment(picture(work / "p.png", 640, 480), "sky,road", work / "out", str(model_dir))
    elif scenario == "make-big-model":
        from omniseg.models.openseg import OpenSegConfig, OpenSegModel

        config = dict(feature_dim=1024, ffn_dim=4096, num_queries=256, fpn_dim=256, num_blocks=5, pos_grid=128)
        OpenSegModel(OpenSegConfig(**config)).save_pretrained(work / "model")
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps({"scenario": scenario, "peak_rss_mb": round(peak_mb(), 1)}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
