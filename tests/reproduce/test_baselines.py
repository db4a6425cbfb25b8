"""The baselines of Table 1: the Probabilistic U-Net and the ensemble of Adapter-SAMs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate
from uncertainty_adapters.integrations.pipeline.models import AdapterEnsemble, ProbabilisticUNet
from uncertainty_adapters.integrations.pipeline.presets import get_preset
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, train
from uncertainty_adapters.integrations.sam import Prompts, UncertaintySam, build_sam

SIZE = 64
HEADS = {"resolution": 32, "num_filters": [8, 16]}
FEATURES = (8, 8, 16, 16, 32, 8)


def prob_unet(seed: int = 0) -> ProbabilisticUNet:
    torch.manual_seed(seed)
    return ProbabilisticUNet(SIZE, latent_dim=4, features=FEATURES, latent_heads_kwargs=HEADS).eval()


def point(batch: int, x: float) -> Prompts:
    return Prompts(points=torch.full((batch, 1, 2), x), labels=torch.ones(batch, 1))


def adapter_sam(seed: int, interaction: str = "none") -> UncertaintySam:
    torch.manual_seed(seed)
    model = UncertaintySam(build_sam("demo", image_size=SIZE), ua.UncertaintyAdapterConfig(interaction=interaction),
                           latent_heads_kwargs=HEADS)
    with torch.no_grad():  # move the zero-initialised up-projections so members differ
        for tensor in model.trainable_state_dict().values():
            tensor.add_(torch.randn(tensor.shape) * 0.2)
    return model.eval()


def _dataset(n: int = 3) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        masks = torch.zeros(3, SIZE, SIZE)
        masks[:, 20:40, 20:40] = 1
        masks[0, 18:42, 18:42] = 1
        items.append({"image": torch.rand(3, SIZE, SIZE, generator=generator), "masks": masks,
                      "mask": masks[:1], "majority": masks[1:2], "case_id": f"c{i}"})
    return items


# -- Probabilistic U-Net ----------------------------------------------------------------------------
def test_prob_unet_returns_k_hypotheses_per_image_from_the_prior():
    out = prob_unet()(torch.rand(2, 3, SIZE, SIZE), num_samples=3, generator=torch.Generator().manual_seed(0))
    assert out.logits.shape == (2, 3, SIZE, SIZE) and out.z.shape == (2, 3, 4) and out.kl is None
    assert not torch.equal(out.logits[:, 0], out.logits[:, 1])


def test_prob_unet_training_draws_from_the_posterior_and_returns_the_kl():
    out = prob_unet()(torch.rand(2, 3, SIZE, SIZE), masks=torch.ones(2, 1, SIZE, SIZE))
    assert out.logits.shape == (2, 1, SIZE, SIZE) and out.kl.shape == (2,)


def test_prob_unet_ignores_prompts():
    model, images = prob_unet(), torch.rand(2, 3, SIZE, SIZE)
    a = model(images, point(2, 5.0), num_samples=2, generator=torch.Generator().manual_seed(1)).logits
    b = model(images, point(2, 50.0), num_samples=2, generator=torch.Generator().manual_seed(1)).logits
    assert torch.equal(a, b)


def test_prob_unet_at_a_lower_resolution_returns_logits_at_the_image_size():
    model = ProbabilisticUNet(2 * SIZE, latent_dim=2, resolution=SIZE, features=FEATURES, latent_heads_kwargs=HEADS)
    assert model(torch.rand(1, 3, 2 * SIZE, 2 * SIZE), num_samples=2).logits.shape == (1, 2, 2 * SIZE, 2 * SIZE)


def test_prob_unet_trains_in_the_pipeline_and_loads_back(tmp_path):
    preset = get_preset("demo").replace(image_size=SIZE, batch_size=4, epochs=1, synthetic_cases=24,
                                        latent_resolution=32, latent_filters=(8, 16), log_every=1, prior_fit_epochs=1)
    train(TrainJob(preset=preset, data="synthetic", out=tmp_path / "run", max_steps=1, cpu=True, model="prob-unet"))
    model, meta = run_dir.load_run(tmp_path / "run")
    assert isinstance(model, ProbabilisticUNet) and meta["model"] == "prob-unet" and meta["backbone"] is None
    images = torch.rand(1, 3, SIZE, SIZE)
    first = model(images, num_samples=2, generator=torch.Generator().manual_seed(0)).logits
    again, _ = run_dir.load_run(tmp_path / "run")
    assert torch.equal(first, again(images, num_samples=2, generator=torch.Generator().manual_seed(0)).logits)


def test_the_prob_unets_recipe_ignores_ua_sams_latent_options(tmp_path):
    # free bits, the latent prompt and the latent nets' learning rate are UA-SAM's: a preset that
    # sets them trains the same Probabilistic U-Net as one that does not
    preset = get_preset("demo").replace(image_size=SIZE, batch_size=4, epochs=1, synthetic_cases=24, latent_lr=1e-4,
                                        latent_resolution=32, latent_filters=(8, 16), prior_fit_epochs=0,
                                        free_bits=0.0, latent_prompt=False)
    ua_options = preset.replace(free_bits=0.5, latent_prompt=True, latent_lr=1e-3)
    for name, settings in (("plain", preset), ("ua-options", ua_options)):
        train(TrainJob(preset=settings, data="synthetic", out=tmp_path / name, max_steps=2, cpu=True, model="prob-unet"))
    plain, _ = run_dir.load_run(tmp_path / "plain")
    other, meta = run_dir.load_run(tmp_path / "ua-options")
    assert meta["free_bits"] == 0.0  # run.json records the free bits it trained with
    weights, same = plain.state_dict(), other.state_dict()
    assert weights.keys() == same.keys()
    assert all(torch.equal(weights[name], same[name]) for name in weights)


def test_an_unknown_model_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        TrainJob(preset=get_preset("demo"), data="synthetic", out=tmp_path, model="unet")


# -- the ensemble -----------------------------------------------------------------------------------
def test_k_equal_to_m_gives_one_hypothesis_per_member():
    members = [adapter_sam(seed) for seed in range(3)]
    images, prompts = torch.rand(2, 3, SIZE, SIZE), point(2, 30.0)
    logits = AdapterEnsemble(members)(images, prompts, num_samples=3).logits
    for k, member in enumerate(members):
        assert torch.allclose(logits[:, k], member(images, prompts).logits[:, 0], atol=1e-5)


def test_k_above_m_cycles_through_the_members():
    logits = AdapterEnsemble([adapter_sam(0), adapter_sam(1)])(torch.rand(1, 3, SIZE, SIZE), point(1, 30.0),
                                                               num_samples=5).logits
    assert torch.equal(logits[:, 0], logits[:, 2]) and torch.equal(logits[:, 0], logits[:, 4])
    assert torch.equal(logits[:, 1], logits[:, 3]) and not torch.equal(logits[:, 0], logits[:, 1])


def test_the_ensemble_counts_every_members_trainable_parameters():
    members = [adapter_sam(0), adapter_sam(1)]
    assert AdapterEnsemble(members).get_nb_trainable_parameters()[0] == 2 * members[0].get_nb_trainable_parameters()[0]


def test_a_deterministic_adapter_sam_scores_zero_diversity():
    result = evaluate(adapter_sam(0), _dataset(), num_samples=4)
    assert result.summary()["diversity"] == 0.0


def test_an_ensemble_of_different_members_scores_some_diversity():
    result = evaluate(AdapterEnsemble([adapter_sam(0), adapter_sam(1)]), _dataset(), num_samples=4)
    assert result.summary()["samples"] == 4 and result.summary()["num_images"] == 3


def test_the_ensemble_is_not_trained_as_one_model():
    with pytest.raises(ValueError, match="evaluated only"):
        AdapterEnsemble([adapter_sam(0)])(torch.rand(1, 3, SIZE, SIZE), point(1, 3.0), masks=torch.ones(1, 1, SIZE, SIZE))


def test_prob_unet_fcomb_equals_concatenating_the_broadcast_z():
    model, generator = prob_unet(), torch.Generator().manual_seed(3)
    features, z = torch.rand(2, model.fcomb[0].in_channels - 4, 8, 8, generator=generator), torch.randn(2, 3, 4, generator=generator)
    tiled = z.reshape(6, 4, 1, 1).expand(-1, -1, 8, 8)
    expected = model.fcomb(torch.cat([features.repeat_interleave(3, dim=0), tiled], dim=1))
    expected = F.interpolate(expected, size=(SIZE, SIZE), mode="bilinear", align_corners=False) if SIZE != 8 else expected
    torch.testing.assert_close(model.combine(features, z), expected.view(2, 3, SIZE, SIZE), rtol=1e-5, atol=1e-5)
