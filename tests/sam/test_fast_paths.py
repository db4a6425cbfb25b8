"""UA-SAM's speed options keep its results: activation checkpointing, SDPA attention, bf16."""

from __future__ import annotations

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import build_uncertainty_sam, sample_point_prompts, use_sdpa_attention

from .conftest import TINY, disc_masks, images, perturb_trainable, tiny_uncertainty_sam


def _training_gradients(model, autocast: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    masks = disc_masks(2)
    prompts = sample_point_prompts(masks, generator=torch.Generator().manual_seed(0))
    model.train()
    torch.manual_seed(5)  # the posterior sample z
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(images(2), prompts, masks)
        loss = ua.elbo_loss(out.logits.float(), masks, out.kl).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _pair():
    stored, checkpointed = tiny_uncertainty_sam(seed=3), tiny_uncertainty_sam(seed=3)
    perturb_trainable(stored)
    perturb_trainable(checkpointed)
    checkpointed.encoder.gradient_checkpointing_enable()
    return stored, checkpointed


def test_checkpointed_training_step_has_the_same_loss_and_gradients():
    stored, checkpointed = _pair()
    loss, grads = _training_gradients(stored)
    loss_ckpt, grads_ckpt = _training_gradients(checkpointed)
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads_ckpt.keys() == grads.keys() and any(n.startswith("encoder.adapters.") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpointed_training_step_under_bf16_autocast_matches_the_stored_one():
    stored, checkpointed = _pair()
    loss, grads = _training_gradients(stored, autocast=True)
    loss_ckpt, grads_ckpt = _training_gradients(checkpointed, autocast=True)
    torch.testing.assert_close(loss_ckpt, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "reference"])
def test_training_gradients_do_not_depend_on_the_attention_implementation(sdpa):
    reference, other = tiny_uncertainty_sam(seed=4), tiny_uncertainty_sam(seed=4)
    perturb_trainable(reference)
    perturb_trainable(other)
    use_sdpa_attention(reference, enabled=False)
    use_sdpa_attention(other, enabled=sdpa)
    _, grads = _training_gradients(reference)
    _, grads_other = _training_gradients(other)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_other[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_build_uncertainty_sam_takes_the_speed_options():
    model = build_uncertainty_sam(TINY, gradient_checkpointing=True, sdpa_attention=False,
                                  latent_heads_kwargs={"num_filters": (8,), "convs_per_block": 1})
    assert model.encoder.is_gradient_checkpointing
    assert not any(type(m).__name__ == "SdpaAttention" for m in model.modules())
    assert not build_uncertainty_sam(TINY, latent_heads_kwargs={"num_filters": (8,)}).encoder.is_gradient_checkpointing


def test_sampling_is_unchanged_by_checkpointing():
    stored, checkpointed = _pair()
    prompts = sample_point_prompts(disc_masks(2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = stored(images(2), prompts, num_samples=3, generator=torch.Generator().manual_seed(1)).logits
        b = checkpointed(images(2), prompts, num_samples=3, generator=torch.Generator().manual_seed(1)).logits
    torch.testing.assert_close(b, a)
