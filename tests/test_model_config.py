"""The cheap parameter bound that spares CLI start-up a meta-device build (issue 14: first image <= 3 s)."""

from __future__ import annotations

import pytest

from omniseg.models.openseg import OpenSegConfig


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"num_queries": 8, "feature_dim": 32, "fpn_dim": 32, "ffn_dim": 64, "num_heads": 2},
        {"arch": "lseg"},
        {"pixel_head": True, "pixel_weight": 0.5},
        {"recognizer": False, "trainable_backbone_from": 16},
        {"feature_dim": 512, "ffn_dim": 2048, "num_blocks": 12, "num_heads": 8, "pos_grid": 64},
        {"fpn_dim": 1024, "text_dim": 1024, "num_queries": 400},
    ],
)
def test_the_upper_bound_is_never_below_the_exact_count(fields):
    config = OpenSegConfig(**fields)
    assert config.parameter_upper_bound() >= config.parameter_count()


def test_the_default_config_needs_no_exact_count():
    from omniseg.models.openseg import MAX_PARAMETERS

    assert OpenSegConfig().parameter_upper_bound() < MAX_PARAMETERS
