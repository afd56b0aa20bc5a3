"""Task functions: small, pure functions of (Regions, Vocabulary, prompts)."""
