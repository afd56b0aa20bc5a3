"""Tiny, randomly initialised transformers models (and a character-level tokenizer) built from
configs and saved with save_pretrained: the backends are tested on these, never on the hub."""

from __future__ import annotations

import string
from pathlib import Path

import torch

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
)
VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)


def save_char_tokenizer(directory: Path, max_length: int = 40) -> dict[str, int]:
    """A character-level fast tokenizer ([BOS] chars [EOS]); returns the special token ids."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + ".,'-!? ")
    vocab = {tok: i for i, tok in enumerate([PAD, UNK, BOS, EOS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK, model_max_length=max_length
    )
    fast.save_pretrained(directory)
    return {
        "pad_token_id": vocab[PAD],
        "bos_token_id": vocab[BOS],
        "eos_token_id": vocab[EOS],
        "vocab_size": len(vocab),
    }


def _save(model: torch.nn.Module, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build(directory: Path, model_class: type, config) -> Path:
    """``model_class(config)`` with seed 0 (the same random weights every run), saved in ``directory``:
    every tiny checkpoint here and in tiny_hf16 is made this one way."""
    torch.manual_seed(0)
    return _save(model_class(config), directory)


def make_clip(directory: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel

    ids = save_char_tokenizer(directory)
    return build(directory, CLIPModel, CLIPConfig(text_config={**TEXT, **ids}, vision_config=VISION, projection_dim=16))


def make_siglip(directory: Path) -> Path:
    from transformers import SiglipConfig, SiglipModel

    ids = save_char_tokenizer(directory)
    return build(directory, SiglipModel, SiglipConfig(text_config={**TEXT, **ids}, vision_config=VISION))


def make_sam(directory: Path) -> Path:
    from transformers import SamConfig, SamModel

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=16)
    grid = dict(image_size=64, patch_size=8, window_size=4, global_attn_indexes=[1], num_pos_feats=8)
    config = SamConfig(
        vision_config={**vision, **grid},
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=16
        ),
    )
    return build(directory, SamModel, config)


def make_seggpt(directory: Path) -> Path:
    from transformers import SegGptConfig, SegGptForImageSegmentation

    encoder = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_dim=64, merge_index=1)
    images = dict(image_size=[64, 32], patch_size=8, pretrain_image_size=32)  # prompt over target: 64 x 32
    decoder = dict(decoder_hidden_size=16, intermediate_hidden_state_indices=[1, 3])
    return build(directory, SegGptForImageSegmentation, SegGptConfig(**encoder, **images, **decoder))


LABELS = {0: "sky", 1: "road", 2: "car", 3: "wall-other-merged"}


def _universal(**specific) -> dict:
    """Config arguments Mask2Former and OneFormer share: a tiny Swin backbone, 8 queries, the labels."""
    from transformers import SwinConfig

    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    common = dict(hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64, num_queries=8, decoder_layers=3)
    common.update(encoder_layers=1, num_attention_heads=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    return dict(backbone_config=swin, **common, **specific)


def make_mask2former(directory: Path) -> Path:
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    config = Mask2FormerConfig(**_universal(feature_size=32, mask_feature_size=32))
    return build(directory, Mask2FormerForUniversalSegmentation, config)


def make_oneformer(directory: Path) -> Path:
    from transformers import OneFormerConfig, OneFormerForUniversalSegmentation

    ids = save_char_tokenizer(directory, max_length=16)
    text = dict(text_encoder_width=32, text_encoder_context_length=16, text_encoder_num_layers=1, text_encoder_n_ctx=4)
    decoder = dict(task_seq_len=16, conv_dim=32, mask_dim=32, query_dec_layers=1)
    config = OneFormerConfig(**_universal(**text, **decoder, text_encoder_vocab_size=ids["vocab_size"]))
    return build(directory, OneFormerForUniversalSegmentation, config)
