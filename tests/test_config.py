"""UncertaintyAdapterConfig: paper defaults, JSON round trip, errors that name the field."""

from __future__ import annotations

import pytest

from uncertainty_adapters import UncertaintyAdapterConfig


def test_defaults_are_the_papers():
    cfg = UncertaintyAdapterConfig()
    assert (cfg.latent_dim, cfg.bottleneck_ratio, cfg.interaction) == (6, 0.25, "cmsm")


def test_json_round_trip(tmp_path):
    cfg = UncertaintyAdapterConfig(latent_dim=4, interaction="concat", embed_dim=96, activation="gelu")
    assert UncertaintyAdapterConfig.from_json(cfg.to_json()) == cfg
    cfg.to_json(tmp_path / "c.json")
    assert UncertaintyAdapterConfig.from_json(tmp_path / "c.json") == cfg


def test_every_field_is_documented():
    import dataclasses

    assert all(field.metadata.get("help") for field in dataclasses.fields(UncertaintyAdapterConfig))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"interaction": "attention"}, "interaction must be one of 'cmsm', 'concat', 'sample', 'position', 'none'"),
        ({"latent_dim": 0}, "latent_dim must be a positive integer"),
        ({"latent_dim": 2.5}, "latent_dim must be a positive integer"),
        ({"bottleneck_ratio": 1.5}, r"bottleneck_ratio must lie in \(0, 1\]"),
        ({"bottleneck_ratio": "big"}, "bottleneck_ratio must be a number"),
        ({"activation": "tanh"}, "activation must be one of 'relu', 'gelu'"),
        ({"embed_dim": -3}, "embed_dim must be a positive integer"),
        ({"mlp_hidden_dim": 0}, "mlp_hidden_dim must be a positive integer"),
    ],
)
def test_bad_values_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UncertaintyAdapterConfig(**kwargs)


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown UncertaintyAdapterConfig field\(s\) \['rank'\]"):
        UncertaintyAdapterConfig.from_dict({"latent_dim": 6, "rank": 8})


def test_sample_and_position_usage_per_interaction():
    usage = {
        name: (UncertaintyAdapterConfig(interaction=name).uses_sample, UncertaintyAdapterConfig(interaction=name).uses_position)
        for name in ("cmsm", "concat", "sample", "position", "none")
    }
    assert usage == {
        "cmsm": (True, True),
        "concat": (True, True),
        "sample": (True, False),
        "position": (False, True),
        "none": (False, False),
    }
