"""PEFT's LoRA and uncertainty adapters on the same backbone, in either order."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

from .backbones import Backbone, perturb_adapters

LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv"])


def _trainable(model) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def test_lora_on_the_base_model_after_injection_trains_both():
    backbone = Backbone("timm")
    x = backbone.images(2)
    with torch.no_grad():
        reference = backbone.model(x)
    model = backbone.inject()
    inject_adapter_in_model(LORA, model.base_model)
    trainable = _trainable(model)
    assert any("lora_" in name for name in trainable)
    assert set(model.adapter_state_dict()) <= trainable
    assert all("lora_" in name for name in trainable if name.startswith("base_model."))
    with torch.no_grad():  # LoRA B and the adapters' last layers start at zero
        assert torch.equal(model(x, z=torch.randn(2, 6)), reference)


def test_lora_first_then_injection_without_refreezing():
    backbone = Backbone("timm")
    inject_adapter_in_model(LORA, backbone.model)
    model = backbone.inject(freeze_backbone=False)
    trainable = _trainable(model)
    assert any("lora_" in name for name in trainable)
    assert not any(name.startswith("base_model.") and "lora_" not in name for name in trainable)


def test_lora_and_uncertainty_adapters_both_receive_gradients_and_save_separately(tmp_path):
    backbone = Backbone("timm")
    model = backbone.inject()
    inject_adapter_in_model(LORA, model.base_model)
    perturb_adapters(model)
    model(backbone.images(2), z=torch.randn(2, 6)).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.save_adapters(tmp_path / "ua")
    lora_state = get_peft_model_state_dict(model.base_model)
    assert lora_state and all("lora_" in name for name in lora_state)
    assert not any("lora_" in name for name in model.adapter_state_dict())
