"""UncertaintyModel's fast paths change nothing but speed and memory: activation checkpointing,
and the row-major token layout of the adapter chain."""

from __future__ import annotations

import pytest
import torch

import uncertainty_adapters as ua

from .backbones import Backbone, perturb_adapters


def _gradients(backbone: Backbone, model: ua.UncertaintyModel, x: torch.Tensor, z: torch.Tensor):
    """Output, and the gradients of every adapter parameter and of the input, for a fixed loss."""
    x = x.clone().requires_grad_(True)
    out = backbone.run(model, x, z=z)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads, x.grad


def _model(backbone: Backbone, checkpointing: bool) -> ua.UncertaintyModel:
    model = backbone.inject()
    perturb_adapters(model)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return model


@pytest.mark.parametrize("hypotheses", [1, 3], ids=["k1", "k3"])
def test_checkpointed_gradients_equal_stored_gradients(backbone: Backbone, hypotheses: int):
    x = backbone.images(2)
    z = torch.randn(2, hypotheses, 6, generator=torch.Generator().manual_seed(0))
    stored = _gradients(backbone, _model(Backbone(backbone.name), checkpointing=False), x, z)
    checkpointed = _gradients(backbone, _model(Backbone(backbone.name), checkpointing=True), x, z)
    torch.testing.assert_close(checkpointed[0], stored[0])
    assert checkpointed[1].keys() == stored[1].keys() and stored[1]
    for name, grad in stored[1].items():
        torch.testing.assert_close(checkpointed[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(checkpointed[2], stored[2], rtol=1e-5, atol=1e-6)


def test_checkpointing_recomputes_every_block_during_backward():
    backbone = Backbone("sam")
    model = _model(backbone, checkpointing=True)
    calls = []
    for index, block in enumerate(backbone.model.blocks):
        block.mlp.register_forward_hook(lambda module, args, out, index=index: calls.append(index))
    out = backbone.run(model, backbone.images(2), z=torch.randn(2, 6))
    assert calls == [0, 1, 2]
    out.sum().backward()
    assert sorted(calls) == [0, 0, 1, 1, 2, 2]


def test_checkpointing_does_nothing_extra_without_grad():
    backbone = Backbone("sam")
    model = _model(backbone, checkpointing=True)
    calls = []
    backbone.model.blocks[0].mlp.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        backbone.run(model, backbone.images(2), z=torch.randn(2, 6))
    assert calls == [1]


def test_disabling_checkpointing_restores_the_blocks_own_forward(backbone: Backbone):
    model = _model(backbone, checkpointing=True)
    assert model.is_gradient_checkpointing
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    blocks = [model.base_model.get_submodule(name) for name in model.block_names]
    assert all("forward" not in block.__dict__ for block in blocks)
    x, z = backbone.images(2), torch.randn(2, 6)
    out = backbone.run(model, x, z=z)  # the hooks apply the adapters again
    model.gradient_checkpointing_enable()
    torch.testing.assert_close(backbone.run(model, x, z=z), out)


def test_unload_after_checkpointing_gives_back_the_untouched_backbone():
    backbone = Backbone("timm")
    x = backbone.images(2)
    with torch.no_grad():
        reference = backbone.run(backbone.model, x)
    model = _model(backbone, checkpointing=True)
    base = model.unload()
    assert all("forward" not in block.__dict__ for block in base.blocks)
    with torch.no_grad():
        assert torch.equal(backbone.run(base, x), reference)


def test_the_backbones_own_checkpointing_is_still_refused_with_the_way_out():
    backbone = Backbone("timm")
    model = _model(backbone, checkpointing=False)
    backbone.model.set_grad_checkpointing(True)
    model.train()
    out = backbone.run(model, backbone.images(2).requires_grad_(True), z=torch.randn(2, 6))
    with pytest.raises(RuntimeError, match="gradient_checkpointing_enable"):
        out.sum().backward()


def test_adapters_run_on_row_major_tokens_and_the_backbone_output_keeps_its_layout():
    # segment-anything's tokens are a permuted (channels-first) view: strided for every op.
    backbone = Backbone("sam")
    x = backbone.images(2)
    with torch.no_grad():
        plain_tokens = []
        handle = backbone.model.blocks[-1].register_forward_hook(lambda m, a, out: plain_tokens.append(out))
        reference = backbone.run(backbone.model, x)
        handle.remove()
        model = _model(backbone, checkpointing=False)
        seen = []
        for adapter in model.adapters[1:]:
            adapter.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
        adapted_tokens = []
        backbone.model.blocks[-1].register_forward_hook(lambda m, a, out: adapted_tokens.append(out))
        out = backbone.run(model, x, z=torch.randn(2, 6))
    assert not plain_tokens[0].is_contiguous()
    assert seen == [True] * (model.num_blocks - 1)
    assert adapted_tokens[0].stride() == plain_tokens[0].stride()
    assert out.shape == reference.shape
