"""`make demo`: the main job on the embedded default model, on photos every machine has.

Segments scikit-image's bundled photos (and, when ../shared/data is present, a few CamVid and
MSRC images) and writes label PNGs, overlays and JSON to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omniseg.cli import main as cli_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
STREET = "sky,building,pole,road,pavement,tree,sign symbol,fence,car,pedestrian,bicyclist"
NATURE = (
    "building,grass,tree,cow,horse,sheep,sky,mountain,aeroplane,water,face,car,bicycle,flower,sign,bird,book,"
    "chair,road,cat,dog,body,boat"
)


def _export_skimage_photos(directory: Path) -> list[Path]:
    try:
        import skimage.data
        from PIL import Image
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("chelsea", "coffee", "astronaut"):
        path = directory / f"{name}.png"
        if not path.is_file():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omniseg.demo")
    parser.add_argument("--out", default="out/demo")
    args = parser.parse_args(argv)
    out = Path(args.out)
    jobs: list[tuple[list[Path], str]] = []
    photos = _export_skimage_photos(out / "inputs")
    if photos:
        jobs.append((photos, "cat,cup,person,table,wall,sky,plate,flag,background"))
    for dataset, classes in (("camvid", STREET), ("msrc_v2", NATURE)):
        images = sorted((SHARED / dataset / "images").glob("*"))[::97][:3] if (SHARED / dataset).is_dir() else []
        if images:
            jobs.append((images, classes))
    if not jobs:
        print("omniseg.demo: no demo images (install scikit-image or provide ../shared/data)", file=sys.stderr)
        return 2
    for images, classes in jobs:
        code = cli_main(["segment", *map(str, images), "--classes", classes, "--out", str(out)])
        if code:
            return code
    print(f"demo outputs in {out}/ (label maps <stem>.png, overlays <stem>_overlay.png, JSON <stem>.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
