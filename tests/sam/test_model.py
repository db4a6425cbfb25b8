"""UncertaintySam: encode/decode, training and sampling forwards, what trains, identity at init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import uncertainty_adapters as ua
from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.sam import Prompts, UncertaintySam, sample_point_prompts

from .conftest import (
    SIZE,
    TINY,
    disc_masks,
    images,
    perturb_trainable,
    sam_reference_logits,
    tiny_uncertainty_sam,
    trained_looking_sam,
)


def _prompts(batch=2, seed=0):
    return sample_point_prompts(disc_masks(batch), generator=torch.Generator().manual_seed(seed))


def _grad_owners(model):
    return {name for name, p in model.named_parameters() if p.grad is not None}


def _trainable_names(model, decoder=False):
    prefixes = ("encoder.condition.", "encoder.adapters.", "encoder.recon.", "latent_heads.")
    prefixes += ("mask_decoder.",) if decoder else ()
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def test_injected_model_at_init_gives_the_plain_sams_logits():
    model = tiny_uncertainty_sam(seed=2)
    sam = trained_looking_sam(seed=2)  # the same weights, no adapters
    x, prompts = images(2), _prompts()
    with torch.no_grad():
        ours = model(x, prompts, num_samples=3).logits
    expected = sam_reference_logits(sam, x, prompts)  # (2, 1, S, S)
    torch.testing.assert_close(ours, expected.expand(-1, 3, -1, -1), rtol=1e-5, atol=1e-5)


def test_encode_with_k_samples_equals_k_separate_encodes(model):
    perturb_trainable(model)
    x, z = images(2), torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = model.encode(x, z)
        separate = torch.stack([model.encode(x, z[:, k]) for k in range(3)], dim=1).flatten(0, 1)
    assert together.shape == (6, TINY.prompt_embed_dim, 8, 8)
    torch.testing.assert_close(together, separate, rtol=1e-5, atol=1e-5)


def test_decode_equals_decoding_each_embedding_alone(model):
    embeddings = torch.randn(3, TINY.prompt_embed_dim, 8, 8)
    prompts = _prompts(3)
    with torch.no_grad():
        together = model.decode(embeddings, prompts)
        alone = torch.cat([
            model.decode(embeddings[i : i + 1], Prompts(prompts.points[i : i + 1], prompts.labels[i : i + 1]))
            for i in range(3)
        ])
    assert together.shape == (3, 1, SIZE, SIZE)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_training_forward_returns_one_mask_per_image_and_a_kl_per_image(model):
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks)
    assert out.logits.shape == (2, 1, SIZE, SIZE)
    assert out.kl.shape == (2,) and (out.kl >= 0).all()
    assert out.z.shape == (2, 1, 6)


def test_a_training_forward_without_posterior_noise_decodes_the_posteriors_mean(model):
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks, num_samples=3, posterior_noise=0.0)
    mean = model.latent_heads.posterior(images(2), masks).mean
    assert torch.equal(out.z, mean.unsqueeze(1).expand(2, 3, 6))
    full = model(images(2), sample_point_prompts(masks), masks, num_samples=3)
    assert torch.equal(out.kl, full.kl) and not torch.equal(out.z, full.z)


def test_sampling_forward_returns_k_masks_per_image_from_the_prior(model):
    perturb_trainable(model)
    with torch.no_grad():
        out = model(images(2), _prompts(), num_samples=4, generator=torch.Generator().manual_seed(0))
    assert out.logits.shape == (2, 4, SIZE, SIZE) and out.z.shape == (2, 4, 6) and out.kl is None
    assert not torch.allclose(out.logits[:, 0], out.logits[:, 1])  # the hypotheses differ


def test_gradients_reach_only_the_adapters_and_latent_heads(model):
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks)
    (out.logits.mean() + out.kl.mean()).backward()
    assert _grad_owners(model) == _trainable_names(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == _trainable_names(model)


def test_train_decoder_lets_gradients_reach_the_mask_decoder_too():
    model = tiny_uncertainty_sam(train_decoder=True)
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks)
    (out.logits.mean() + out.kl.mean()).backward()
    owners = _grad_owners(model)
    # The single-mask output uses mask token 0: the multimask hypernetworks and the IoU head
    # take no part, as in segment-anything with multimask_output=False.
    unused = ("mask_decoder.output_hypernetworks_mlps.1.", "mask_decoder.output_hypernetworks_mlps.2.",
              "mask_decoder.output_hypernetworks_mlps.3.", "mask_decoder.iou_prediction_head.")
    assert owners == {n for n in _trainable_names(model, decoder=True) if not n.startswith(unused)}
    assert {n for n in owners if n.startswith("mask_decoder.transformer.")}


def test_elbo_loss_accepts_the_training_output(model):
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks)
    terms = ua.elbo_loss(out.logits, masks, out.kl)
    terms.loss.backward()
    assert torch.isfinite(terms.loss)


def test_trainable_state_dict_round_trip_reproduces_samples(model):
    perturb_trainable(model)
    other = tiny_uncertainty_sam()
    other.load_trainable_state_dict(model.trainable_state_dict())
    x, prompts = images(2), _prompts()
    with torch.no_grad():
        a = model(x, prompts, num_samples=2, generator=torch.Generator().manual_seed(3)).logits
        b = other(x, prompts, num_samples=2, generator=torch.Generator().manual_seed(3)).logits
    assert torch.equal(a, b)


def test_trainable_state_dict_holds_adapters_and_latent_heads_only(model):
    names = set(model.trainable_state_dict())
    assert names and all(n.startswith(("encoder.condition.", "encoder.adapters.", "encoder.recon.", "latent_heads.")) for n in names)
    assert any(n.startswith("latent_heads.") for n in names) and any(n.startswith("encoder.adapters.") for n in names)


def test_loading_trainable_weights_of_another_configuration_is_refused(model):
    other = tiny_uncertainty_sam(adapter_config=ua.UncertaintyAdapterConfig(latent_dim=4, mlp_hidden_dim=16))
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        model.load_trainable_state_dict(other.trainable_state_dict())


def test_deterministic_interaction_has_no_latent_heads_and_zero_kl():
    model = tiny_uncertainty_sam(adapter_config=ua.UncertaintyAdapterConfig(interaction="none"))
    masks = disc_masks(2)
    out = model(images(2), sample_point_prompts(masks), masks)
    assert model.latent_heads is None and out.z is None
    assert torch.equal(out.kl, torch.zeros(2))
    with torch.no_grad():
        samples = model(images(2), sample_point_prompts(masks), num_samples=2).logits
    torch.testing.assert_close(samples[:, 0], samples[:, 1])


def test_images_of_the_wrong_size_are_refused_with_the_expected_shape(model):
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 64, 64\).*got \(2, 3, 32, 32\)"):
        model(images(2, size=32), _prompts())


def test_prompt_count_must_match_the_images(model):
    with pytest.raises(ValueError, match="got 3 images but 2 prompt sets"):
        model(images(3), _prompts(2))


def test_a_non_sam_module_is_refused():
    with pytest.raises(TypeError, match="expects a segment-anything Sam"):
        UncertaintySam(torch.nn.Linear(2, 2))


def test_logits_are_upsampled_from_sams_low_resolution_masks(model):
    embeddings = torch.randn(1, TINY.prompt_embed_dim, 8, 8)
    prompts = _prompts(1)
    sparse, dense = model.prompt_encoder(points=(prompts.points, prompts.labels), boxes=None, masks=None)
    with torch.no_grad():
        low_res, _ = model.mask_decoder(embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense, False)
        expected = F.interpolate(low_res, (SIZE, SIZE), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model.decode(embeddings, prompts), expected, rtol=1e-5, atol=1e-5)


def test_latent_heads_kwargs_may_not_override_the_latent_dim_and_leave_the_sam_untouched():
    sam = trained_looking_sam()
    with pytest.raises(ValueError, match=r"may not set \['latent_dim'\]"):
        UncertaintySam(sam, latent_heads_kwargs={"latent_dim": 3})
    assert all(p.requires_grad for p in sam.image_encoder.parameters())
