"""Optional packages: the core install runs `segment`, `refer`, `click`, `incontext`, `video`,
`batch` and the Python API; the rest comes with an extra (pyproject.toml):

| extra | packages | for |
|---|---|---|
| train | pyyaml, matplotlib | `omniseg train` (YAML configs, loss plots) |
| report | matplotlib, scikit-image | `eval --report`, the superpixel recall baseline, the demo photos |
| onnx | onnx, onnxscript, onnxruntime | `export onnx`, `--runtime onnx` |
| serve | fastapi, uvicorn, python-multipart | `omniseg serve` |
| backends | sentencepiece | SigLIP's tokenizer |
| ray | ray[data] | `batch --ray` |

``require`` turns a missing one into a one-line MissingResourceError (exit 2) before any work.
"""

from __future__ import annotations

import importlib.util

from omniseg.errors import MissingResourceError


def require(module: str, extra: str, purpose: str) -> None:
    """MissingResourceError naming the extra to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingResourceError(f"{purpose} needs the package {module}: pip install 'omniseg[{extra}]'")
