"""inject_uncertainty_adapters on every supported backbone family: the properties users rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import uncertainty_adapters as ua

from .backbones import Backbone, CustomBackbone, perturb_adapters


def test_injected_model_starts_as_the_frozen_model(backbone: Backbone):
    x = backbone.images(2)
    with torch.no_grad():
        reference = backbone.run(backbone.model, x)
        model = backbone.inject()
        out = backbone.run(model, x, z=torch.randn(2, 6))
    assert torch.equal(out, reference)


def test_only_adapter_parameters_require_grad(backbone: Backbone):
    model = backbone.inject()
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable
    assert all(not name.startswith("base_model.") for name in trainable)
    assert trainable == {f"{name}" for name in model.adapter_state_dict()}


def test_every_adapter_parameter_gets_a_gradient(backbone: Backbone):
    """No unused parameters: DistributedDataParallel works without find_unused_parameters."""
    model = backbone.inject()
    perturb_adapters(model)
    out = backbone.run(model, backbone.images(2), z=torch.randn(2, 6))
    out.float().pow(2).mean().backward()
    missing = [name for name, param in model.named_parameters() if param.requires_grad and param.grad is None]
    assert missing == []


def test_output_for_an_image_does_not_depend_on_the_rest_of_the_batch(backbone: Backbone):
    model = backbone.inject()
    perturb_adapters(model)
    x, z = backbone.images(3), torch.randn(3, 6)
    with torch.no_grad():
        batched = backbone.run(model, x, z=z)
        alone = backbone.run(model, x[1:2], z=z[1:2])
    torch.testing.assert_close(batched[1:2], alone, rtol=1e-5, atol=1e-5)


def test_different_z_give_different_outputs_once_trained(backbone: Backbone):
    model = backbone.inject()
    perturb_adapters(model)
    x = backbone.images(1).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = backbone.run(model, x, z=torch.randn(2, 6))
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_k_hypotheses_in_one_forward_equal_k_separate_forwards(backbone: Backbone):
    model = backbone.inject()
    perturb_adapters(model)
    x, z = backbone.images(2), torch.randn(2, 3, 6)
    with torch.no_grad():
        joint = backbone.run(model, x, z=z)
        separate = torch.stack(
            [backbone.run(model, x[b : b + 1].expand(3, -1, -1, -1), z=z[b]) for b in range(2)]
        )
    assert joint.shape[0] == 6
    torch.testing.assert_close(joint, separate.flatten(0, 1), rtol=1e-5, atol=1e-5)


def test_unload_restores_the_original_outputs_and_flags(backbone: Backbone):
    x = backbone.images(2)
    flags = [param.requires_grad for param in backbone.model.parameters()]
    with torch.no_grad():
        reference = backbone.run(backbone.model, x)
    model = backbone.inject()
    perturb_adapters(model)
    base = model.unload()
    assert base is backbone.model
    assert [param.requires_grad for param in base.parameters()] == flags
    with torch.no_grad():
        assert torch.equal(backbone.run(base, x), reference)


def test_unloaded_model_refuses_to_run():
    backbone = Backbone("timm")
    model = backbone.inject()
    model.unload()
    with pytest.raises(RuntimeError, match="unloaded"):
        model(backbone.images(1), z=torch.randn(1, 6))


def test_state_dict_keys_of_the_backbone_are_unchanged(backbone: Backbone):
    keys = set(backbone.model.state_dict())
    backbone.inject()
    assert set(backbone.model.state_dict()) == keys


def test_unknown_model_gets_an_error_saying_how_to_pass_blocks():
    with pytest.raises(ValueError, match=r"blocks='backbone.layers'"):
        ua.inject_uncertainty_adapters(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))


def test_custom_backbone_works_with_blocks_given_as_modules():
    net = CustomBackbone()
    model = ua.inject_uncertainty_adapters(net, blocks=list(net.trunk.stages))
    assert model.block_names == ("trunk.stages.0", "trunk.stages.1")
    assert model(torch.rand(2, 3, 32, 32), z=torch.randn(2, 6)).shape == (2, 3)


def test_blocks_path_that_is_not_a_block_list_is_refused():
    with pytest.raises(ValueError, match="trunk.embed"):
        ua.inject_uncertainty_adapters(CustomBackbone(), blocks="trunk.embed")


def test_calling_the_backbone_directly_after_injection_is_refused():
    backbone = Backbone("timm")
    backbone.inject()
    with pytest.raises(RuntimeError, match="outside UncertaintyModel.forward"):
        backbone.model(backbone.images(1))


def test_cmsm_without_z_is_refused_with_the_expected_shape():
    backbone = Backbone("timm")
    model = backbone.inject()
    with pytest.raises(ValueError, match=r"pass z of shape \(B, 6\)"):
        model(backbone.images(2))


def test_z_of_the_wrong_width_is_refused():
    backbone = Backbone("timm")
    model = backbone.inject()
    with pytest.raises(ValueError, match=r"\(B, 6\) or \(B, K, 6\)"):
        model(backbone.images(2), z=torch.randn(2, 5))


def test_z_for_a_different_batch_is_refused():
    backbone = Backbone("timm")
    model = backbone.inject()
    with pytest.raises(ValueError, match="backbone's batch is 2"):
        model(backbone.images(2), z=torch.randn(3, 6))


def test_injecting_twice_is_refused():
    backbone = Backbone("timm")
    model = backbone.inject()
    with pytest.raises(ValueError, match="already has uncertainty adapters"):
        ua.inject_uncertainty_adapters(model)


def test_embed_dim_is_read_from_the_backbone(backbone: Backbone):
    expected = 32 if backbone.name == "custom" else 64
    assert backbone.inject().embed_dim == expected


def test_hidden_states_of_transformers_models_include_the_adapters():
    backbone = Backbone("hf_vit")
    x = backbone.images(2)
    with torch.no_grad():
        plain = backbone.model(pixel_values=x, output_hidden_states=True).hidden_states
    model = backbone.inject()
    perturb_adapters(model)
    with torch.no_grad():
        adapted = model(pixel_values=x, z=torch.randn(2, 6), output_hidden_states=True).hidden_states
    assert len(adapted) == len(plain)
    assert torch.equal(adapted[0], plain[0])  # the embeddings, before any block
    assert not torch.allclose(adapted[-1], plain[-1])


def test_adapters_follow_the_backbone_dtype():
    backbone = Backbone("timm")
    backbone.model.to(torch.float64)
    model = backbone.inject()
    out = model(backbone.images(1).double(), z=torch.randn(1, 6))
    assert out.dtype == torch.float64
    assert all(param.dtype == torch.float64 for param in model.adapters.parameters())
