"""z as a dense prompt of the mask decoder (`LatentDensePrompt`, ``UncertaintySam(latent_prompt=True)``)."""

from __future__ import annotations

import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import Prompts
from uncertainty_adapters.integrations.sam.latent_prompt import LatentDensePrompt

from .conftest import SIZE, TINY_HEADS, images, tiny_uncertainty_sam


def _prompts(batch: int) -> Prompts:
    return Prompts(points=torch.full((batch, 1, 2), SIZE / 2), labels=torch.ones(batch, 1, dtype=torch.long))


def test_an_untrained_latent_dense_prompt_leaves_the_embeddings_as_they_are():
    embeddings = torch.randn(6, 32, 8, 8)
    assert torch.equal(LatentDensePrompt(6, 32)(embeddings, torch.randn(2, 3, 6)), embeddings)


def test_each_embedding_is_shifted_by_its_own_samples_vector_at_every_position():
    prompt = LatentDensePrompt(2, 4, hidden_dim=8)
    torch.nn.init.normal_(prompt.net[-1].weight)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    shift = prompt(torch.zeros(2, 4, 3, 3), z)
    assert torch.allclose(shift, prompt.net(z)[:, :, None, None].expand(2, 4, 3, 3))
    assert not torch.allclose(shift[0], shift[1])


def test_a_mismatched_number_of_samples_is_a_clear_error():
    try:
        LatentDensePrompt(6, 32)(torch.zeros(4, 32, 8, 8), torch.zeros(3, 6))
    except ValueError as error:
        assert "pairs embedding i with sample i" in str(error)
    else:
        raise AssertionError("expected a ValueError")


def test_the_latent_prompt_is_trainable_and_saved_with_the_trainable_weights():
    model = tiny_uncertainty_sam(latent_prompt=True)
    names = [name for name in model.trainable_state_dict() if name.startswith("latent_prompt.")]
    assert names and all(p.requires_grad for p in model.latent_prompt.parameters())
    assert tiny_uncertainty_sam().latent_prompt is None


def test_without_a_latent_there_is_no_latent_prompt():
    model = tiny_uncertainty_sam(latent_prompt=True, adapter_config=ua.UncertaintyAdapterConfig(interaction="none"))
    assert model.latent_prompt is None


def test_the_first_training_step_gives_the_latent_prompt_a_gradient():
    model = tiny_uncertainty_sam(latent_prompt=True).train()
    masks = (torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = model(images(2), _prompts(2), masks=masks)
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, masks).backward()
    assert model.latent_prompt.net[-1].weight.grad.abs().sum() > 0


def test_the_samples_of_an_image_differ_through_the_latent_prompt_alone():
    model = tiny_uncertainty_sam(latent_prompt=True)
    with torch.no_grad():
        torch.nn.init.normal_(model.latent_prompt.net[-1].weight, std=1.0)
    out = model(images(1), _prompts(1), num_samples=3, generator=torch.Generator().manual_seed(0))
    # the adapters are still at their init (identity), so only the dense prompt can make them differ
    assert not torch.allclose(out.logits[0, 0], out.logits[0, 1])


def test_a_random_start_gives_z_and_the_posterior_a_gradient_from_the_first_step():
    """start="zero": the reconstruction's gradient stops at the zero last layer; "random": it
    reaches the prompt's first layer and, through z, the posterior net."""
    masks = (torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    reached = {}
    for start in ("zero", "random"):
        torch.manual_seed(0)
        # the adapters' own z paths start at zero too, so only the prompt can pass z's gradient on
        model = tiny_uncertainty_sam(latent_prompt=True, latent_prompt_start=start).train()
        out = model(images(2), _prompts(2), masks=masks)
        torch.nn.functional.binary_cross_entropy_with_logits(out.logits, masks).backward()
        first = model.latent_prompt.net[0].weight.grad
        posterior = [p.grad for p in model.latent_heads.posterior_net.parameters() if p.grad is not None]
        reached[start] = (first.abs().sum() > 0, any(g.abs().sum() > 0 for g in posterior))
    assert reached == {"zero": (False, False), "random": (True, True)}


def test_a_random_start_moves_the_embeddings_by_the_sample_and_an_unknown_start_is_refused():
    torch.manual_seed(0)
    prompt = LatentDensePrompt(6, 32, start="random")
    embeddings = torch.randn(2, 32, 8, 8)
    shifted = prompt(embeddings, torch.randn(2, 6))
    assert not torch.allclose(shifted, embeddings) and not torch.allclose(shifted[0] - embeddings[0], shifted[1] - embeddings[1])
    try:
        LatentDensePrompt(6, 32, start="ones")
    except ValueError as error:
        assert "unknown latent prompt start 'ones'" in str(error)
    else:
        raise AssertionError("expected a ValueError")
