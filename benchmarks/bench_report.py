"""How a benchmark hands back its figures: the JSON report printed, and saved where ``--json`` says."""

from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict, path: str | Path | None) -> None:
    """Print ``report`` as indented JSON; with ``path``, also write it there (parents created)."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
