"""Text encoders map prompts into the space region embeddings live in."""

from omniseg.text.encoder import MiniLMTextEncoder, TextEncoder, default_text_encoder

__all__ = ["MiniLMTextEncoder", "TextEncoder", "default_text_encoder"]
