"""The native trainable model (OpenSeg on EfficientNet-Lite0) and where its embedded weights live."""

from pathlib import Path

# The embedded default model: config.json + model.safetensors + MODEL_CARD.md, shipped in the wheel.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"
