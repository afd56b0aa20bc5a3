"""Adapters that produce Regions, proposals or text embeddings from other models: masks from any
source x embeddings from any source (docs/ARCHITECTURE.md), composed into one region source.

    seg = omniseg.load(masks="sam:facebook/sam-vit-base", embed="clip:openai/clip-vit-base-patch32")
    seg.segment("street.jpg", classes="sky,road,car")

A spec is ``KIND:PATH`` where PATH is a directory written by ``save_pretrained`` or a hub id (used
from the local Hugging Face cache; downloads only with HF_HUB_OFFLINE=0). The kinds and their
roles are registered in ``omniseg.registry`` (the only place specs are parsed):

| kind | masks | embeddings / text | tasks |
|---|---|---|---|
| native, onnx | yes | yes (MiniLM text space; onnx: its own masks only) | all |
| sam | yes (point grid + NMS; clicks/boxes as prompts) | no | all, with an embedding source |
| mask2former, oneformer | yes | their labels, by name, in the MiniLM space | all |
| clip, siglip | no | yes (dense features, own text tower) | all, with a mask source |
| seggpt | - | - | incontext, video (SegGptBackend) |

Modules: base (the mask/embedding source protocols and ComposedSource), native, caching (a Regions
cache in front of any source), hub (finding and loading transformers checkpoints), one module per
adapter; superpixels is a classical proposal source (a multi-scale superpixel hierarchy): the
recall baseline of ``omniseg eval --metric recall``.
"""
