"""Tiny random SAM 3 / SAM 2 / EdgeTAM / Grounding DINO / CLIPSeg checkpoints (issue 16), built from
configs and saved with save_pretrained; the issue-16 adapters are tested on these, never on the hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tiny_hf import TEXT, VISION, _universal, build, save_char_tokenizer

# SAM 3's ViT at 56 px (4 x 4 patches of 14, windows of 2, one global layer) and its FPN neck
SAM3_VIT = dict(
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
)


def sam3_vision(hidden: int = 32) -> dict:
    return dict(
        model_type="sam3_vision_model",
        backbone_config=SAM3_VIT,
        fpn_hidden_size=hidden,
        backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
    )


def sam3_config(ids: dict[str, int], hidden: int = 32):
    from transformers import Sam3Config

    block = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=64)
    return Sam3Config(
        vision_config=sam3_vision(hidden),
        text_config={**TEXT, **ids, "num_hidden_layers": 1, "max_position_embeddings": 32, "projection_dim": hidden},
        geometry_encoder_config={**block, "roi_size": 2},
        detr_encoder_config=block,
        detr_decoder_config={**block, "num_layers": 2, "num_queries": 8},
        mask_decoder_config=dict(hidden_size=hidden, num_upsampling_stages=3, num_attention_heads=2),
    )


def make_sam3(directory: Path) -> Path:
    """A ~0.3M-parameter Sam3Model (56 px input) with a character-level tokenizer padded to 32."""
    from transformers import Sam3Model

    ids = save_char_tokenizer(directory, max_length=32)
    return build(directory, Sam3Model, sam3_config(ids))


# SAM 2's Hiera at 64 px: stages at strides 4..32 (16, 8, 4, 2 cells); a global block inside stage 3
HIERA = dict(
    model_type="sam2_hiera_det_model",
    hidden_size=8,
    num_attention_heads=1,
    image_size=[64, 64],
    blocks_per_stage=[1, 1, 2, 1],
    embed_dim_per_stage=[8, 16, 32, 64],
    num_attention_heads_per_stage=[1, 1, 1, 1],
    window_size_per_stage=[4, 2, 2, 1],
    global_attention_blocks=[3],
    window_positional_embedding_background_size=[2, 2],
)


def sam2_parts(hidden: int = 32, sam3: bool = False) -> dict:
    """Vision, prompt encoder and mask decoder configs of a 64 px SAM 2 (Hiera + FPN), or with sam3=True
    of a 56 px SAM 3 tracker (SAM 3's ViT + FPN): both with 4 x 4 image embeddings."""
    vision = dict(
        backbone_config=HIERA,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        fpn_hidden_size=hidden,
    )
    size, patch = (56, 14) if sam3 else (64, 16)
    return dict(
        vision_config=sam3_vision(hidden) if sam3 else vision,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=size, patch_size=patch, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )


# the video model's memory on the 4 x 4 grid. Its memory attention reads 64-channel memories
# (hard-coded in transformers) and splits object pointers into memory-sized tokens, which needs a
# hidden size above 64 (as in real checkpoints: 256): 128 here
SAM2_MEMORY = dict(
    image_size=64,
    num_maskmem=3,
    memory_attention_hidden_size=128,
    memory_attention_num_layers=1,
    memory_attention_feed_forward_hidden_size=64,
    memory_attention_rope_feat_sizes=[4, 4],
    memory_encoder_hidden_size=128,
    memory_encoder_output_channels=64,
    mask_downsampler_embed_dim=128,
    memory_fuser_embed_dim=128,
    memory_fuser_intermediate_dim=64,
)


def make_sam2(directory: Path) -> Path:
    from transformers import Sam2Config, Sam2Model

    return build(directory, Sam2Model, Sam2Config(**sam2_parts()))


def make_sam2_video(directory: Path) -> Path:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    return build(directory, Sam2VideoModel, Sam2VideoConfig(**sam2_parts(128), **SAM2_MEMORY))


def make_sam3_tracker(directory: Path) -> Path:
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    return build(directory, Sam3TrackerModel, Sam3TrackerConfig(**sam2_parts(sam3=True)))


def sam3_tracker_video_config():
    """The SAM 3 tracker with SAM 2's video memory at 56 px (hidden size 128: see SAM2_MEMORY)."""
    from transformers import Sam3TrackerVideoConfig

    return Sam3TrackerVideoConfig(**sam2_parts(128, sam3=True), **{**SAM2_MEMORY, "image_size": 56})


def make_sam3_tracker_video(directory: Path) -> Path:
    from transformers import Sam3TrackerVideoModel

    return build(directory, Sam3TrackerVideoModel, sam3_tracker_video_config())


def make_grounding_dino(directory: Path) -> Path:
    """A tiny Swin + BERT Grounding DINO (10 queries, 64 text tokens) with its PIL image processor at 64 px."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    ids = save_char_tokenizer(directory, max_length=64)
    swin = _universal()["backbone_config"]  # the tiny Swin of the Mask2Former tests, last three stages
    swin.out_features = ["stage2", "stage3", "stage4"]
    text = dict(TEXT, model_type="bert", num_hidden_layers=1, max_position_embeddings=64)
    text.update(vocab_size=ids["vocab_size"], pad_token_id=ids["pad_token_id"])
    layers = dict(encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64)
    attention = dict(encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2)
    config = GroundingDinoConfig(
        backbone_config=swin, text_config=text, num_queries=10, d_model=32, max_text_len=64, **layers, **attention
    )
    build(directory, GroundingDinoForObjectDetection, config)
    GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(directory)
    return directory


def make_clipseg(directory: Path) -> Path:
    """A tiny CLIPSeg (32 px CLIP, decoder on layer 1) with its PIL image processor at 32 px."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, ViTImageProcessorPil

    ids = save_char_tokenizer(directory)
    decoder = dict(extract_layers=[1], reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32)
    config = CLIPSegConfig(text_config={**TEXT, **ids}, vision_config=VISION, projection_dim=16, **decoder)
    build(directory, CLIPSegForImageSegmentation, config)
    ViTImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(directory)
    return directory


def make_sam3_combined(directory: Path) -> Path:
    """A tiny ``Sam3VideoModel`` checkpoint (model_type sam3_video: detector + tracker in one file, the
    layout of facebook/sam3), hidden size 128 so that its tracker's video memory works."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    ids = save_char_tokenizer(directory, max_length=32)
    tracker = sam3_tracker_video_config().to_dict()
    return build(
        directory,
        Sam3VideoModel,
        Sam3VideoConfig(detector_config=sam3_config(ids, 128).to_dict(), tracker_config=tracker),
    )


# -- the synthetic scenes the issue-16 kinds are run through the evaluators on ---------------------
def scene(shift: int = 0, height: int = 40, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """An image with a red (id 1) and a green (id 2) block on dark noise, moved ``shift`` px apart."""
    rng = np.random.default_rng(2)
    image = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    ids = np.zeros((height, width), np.uint8)
    ids[5:20, 5 + shift : 25 + shift] = 1
    ids[22:38, 30 - shift : 55 - shift] = 2
    image[ids == 1] += np.array([180, 20, 20], np.uint8)
    image[ids == 2] += np.array([20, 180, 20], np.uint8)
    return image, ids


def write_scenes(root: Path, folder: str, classes: list[str] | None = None) -> Path:
    """4 scenes (the blocks moving 2 px each) as ``images/<folder>/<i>.png`` + ``masks/<folder>/<i>.png``:
    folder "" with ``classes`` is the uniform layout, a sequence name the video layout."""
    for i in range(4):
        image, ids = scene(2 * i)
        for sub, array in (("images", image), ("masks", ids)):
            (root / sub / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / sub / folder / f"{i:03d}.png")
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return root


def make_many(root: Path, *names: str) -> dict[str, Path]:
    """Tiny checkpoints by short name (gdino, clipseg, sam: the SAM of tiny_hf; else make_<name>) under
    ``root``, built without disturbing the caller's random state."""
    from tiny_hf import make_sam

    makers = {"gdino": make_grounding_dino, "clipseg": make_clipseg, "sam": make_sam}
    with torch.random.fork_rng():
        return {name: (makers.get(name) or globals()[f"make_{name}"])(root / name) for name in names}
