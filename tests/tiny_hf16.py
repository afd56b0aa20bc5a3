"""Tiny random SAM 3 / SAM 2 / EdgeTAM / Grounding DINO / CLIPSeg checkpoints (issue 16), built from
configs and saved with save_pretrained; the issue-16 adapters are tested on these, never on the hub."""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_hf import _save, save_char_tokenizer


def sam3_config(ids: dict[str, int]):
    from transformers import Sam3Config

    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=56,
                patch_size=14,
                window_size=2,
                global_attn_indexes=[1],
                pretrain_image_size=28,
            ),
            fpn_hidden_size=32,
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        ),
        text_config=dict(
            vocab_size=ids["vocab_size"],
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            pad_token_id=ids["pad_token_id"],
            bos_token_id=ids["bos_token_id"],
            eos_token_id=ids["eos_token_id"],
        ),
        geometry_encoder_config=dict(
            hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64, roi_size=2
        ),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(
            hidden_size=32, num_layers=2, num_queries=8, num_attention_heads=2, intermediate_size=64
        ),
        mask_decoder_config=dict(hidden_size=32, num_upsampling_stages=3, num_attention_heads=2),
    )


def make_sam3(directory: Path) -> Path:
    """A ~0.3M-parameter Sam3Model (56 px input) with a character-level tokenizer padded to 32."""
    from transformers import Sam3Model

    ids = save_char_tokenizer(directory, max_length=32)
    torch.manual_seed(0)
    return _save(Sam3Model(sam3_config(ids)), directory)
