"""save_adapters(dir, latent_heads=heads): the latent heads saved and loaded by the library, in the
adapters' PEFT-style folder, checked like the adapters (shapes, hash), and run folders of earlier
versions (heads beside adapters/) still loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt

LEGACY_RUN = Path(__file__).parent / "fixtures" / "legacy_run"


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU()) for _ in range(3)))


def _model_and_heads(latent_dim: int = 4) -> tuple[ua.UncertaintyModel, ua.LatentHeads]:
    backbone = _backbone()
    model = ua.inject_uncertainty_adapters(backbone, ua.UncertaintyAdapterConfig(latent_dim=4, embed_dim=16),
                                           blocks=list(backbone))
    heads = ua.LatentHeads(in_channels=3, latent_dim=latent_dim, num_filters=(8, 16), resolution=16)
    with torch.no_grad():  # as if trained
        for param in [*model.parameters(), *heads.parameters()]:
            if param.requires_grad:
                param.normal_(0, 0.3)
    return model, heads


def test_the_heads_are_written_into_the_adapter_folder(tmp_path):
    model, heads = _model_and_heads()
    model.save_adapters(tmp_path / "a", latent_heads=heads)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "latent_heads.safetensors"]
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["latent_heads"] == heads.config


def test_adapters_and_heads_load_back_bit_for_bit(tmp_path):
    model, heads = _model_and_heads()
    model.save_adapters(tmp_path / "a", latent_heads=heads)
    restored, restored_heads = ua.load_adapters_and_latent_heads(_backbone(), tmp_path / "a")
    x = torch.rand(2, 3, 32, 32)
    draw = [h.sample(x, 3, generator=torch.Generator().manual_seed(1)) for h in (heads, restored_heads)]
    assert torch.equal(draw[0], draw[1])
    with torch.no_grad():
        z = draw[0][:, 0]
        tokens = torch.rand(2, 5, 16)  # (B, N, D)
        assert torch.equal(restored(tokens, z=z), model(tokens, z=z))


def test_adapters_saved_without_heads_are_a_clear_error_for_the_heads_loader(tmp_path):
    model, _ = _model_and_heads()
    model.save_adapters(tmp_path / "a")
    with pytest.raises(ua.CheckpointMismatchError, match=r"saved without latent heads.*latent_heads=heads"):
        ua.load_adapters_and_latent_heads(_backbone(), tmp_path / "a")


def test_a_heads_file_of_another_save_is_refused(tmp_path):
    model, heads = _model_and_heads()
    model.save_adapters(tmp_path / "a", latent_heads=heads)
    _, other = _model_and_heads()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    model.save_adapters(tmp_path / "b", latent_heads=other)
    shutil.copyfile(tmp_path / "b" / "latent_heads.safetensors", tmp_path / "a" / "latent_heads.safetensors")
    with pytest.raises(ua.CheckpointMismatchError, match="hash differs"):
        ua.load_latent_heads(tmp_path / "a")


def test_heads_of_another_latent_dimension_are_refused_before_writing(tmp_path):
    model, _ = _model_and_heads()
    _, heads = _model_and_heads(latent_dim=6)
    with pytest.raises(ValueError, match="latent_dim=4"):
        model.save_adapters(tmp_path / "a", latent_heads=heads)
    assert not (tmp_path / "a").exists()


def test_a_run_folder_of_the_earlier_layout_loads_its_heads_and_adapters():
    # written by the code before this layout: DIR/latent_heads.safetensors beside DIR/adapters/
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run

    model, _ = load_run(LEGACY_RUN)
    heads = ckpt.load_tensors(LEGACY_RUN / "latent_heads.safetensors")
    adapters = ckpt.load_tensors(LEGACY_RUN / "adapters" / "adapter_model.safetensors")
    for name, tensor in model.latent_heads.state_dict().items():
        assert torch.equal(tensor, heads[name]), name
    for name, tensor in model.encoder.adapter_state_dict().items():
        assert torch.equal(tensor, adapters[name]), name
    # heads saved before `activation` existed keep the ReLU they were trained with
    assert isinstance(model.latent_heads.posterior_net.features[1], torch.nn.ReLU)
