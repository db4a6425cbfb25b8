"""benchmarks/latent_takeoff.py: each what-if changes exactly what it names, only inside the block."""

import argparse
from unittest import mock

import pytest
import torch

import uncertainty_adapters as ua
from benchmarks import latent_takeoff


def _options(**given):
    values = {"posterior_sigma": None, "posterior_gain": None, "total_free_bits": False, "all_raters": False,
              "all_raters_epochs": None, "aux_decoder": None, "aux_noise": "posterior", "prompt_form": None, "prior_samples": None,
              "prior_weight": 1.0, "aggressive_posterior": None, "aggressive_share": 0.25, "aggressive_check": None,
              "init_seed": None, "step_seed": None, **given}
    return argparse.Namespace(**values)


def _heads(seed: int = 0) -> ua.LatentHeads:
    torch.manual_seed(seed)
    return ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8, 8), resolution=16)


def test_posterior_sigma_sets_the_posteriors_start_and_leaves_the_prior_alone():
    x, y = torch.rand(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    plain = _heads()
    with latent_takeoff.what_if(_options(posterior_sigma=0.4)):
        heads = _heads()
    with torch.no_grad():  # sigma at initialisation: the bias's, up to what the input adds
        assert heads.posterior(x, y).log_sigma.mean().exp() == pytest.approx(0.4, rel=0.15)
        assert plain.posterior(x, y).log_sigma.mean().exp() == pytest.approx(1.0, rel=0.15)
        assert torch.equal(heads.prior(x).log_sigma, plain.prior(x).log_sigma)


def test_posterior_gain_scales_the_posterior_means_and_nothing_else():
    x, y = torch.rand(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    plain = _heads()
    with latent_takeoff.what_if(_options(posterior_gain=20.0)):
        scaled = _heads()
    with torch.no_grad():
        q0, q1 = plain.posterior(x, y), scaled.posterior(x, y)
        assert torch.allclose(q1.mean, 20 * q0.mean, atol=1e-5)
        assert torch.allclose(q1.sigma, q0.sigma)
        assert torch.equal(plain.prior(x).mean, scaled.prior(x).mean)


def test_total_free_bits_floor_the_sum_so_one_dimension_may_carry_it_all():
    loss = ua.ElboLoss(beta=1.0, free_bits=0.5, validate=False)
    kl = torch.tensor([[1.5, 0.0, 0.0, 0.0]])  # one dimension carries 1.5 nats, under 4 x 0.5
    assert float(loss.kl_terms(kl)[0]) == pytest.approx(1.5 + 3 * 0.5)  # per dimension: floored each
    with latent_takeoff.what_if(_options(total_free_bits=True)):
        penalised, total = loss.kl_terms(kl)
        assert float(penalised) == pytest.approx(2.0) and float(total) == pytest.approx(1.5)
        penalised = ua.ElboLoss(beta=1.0, free_bits=0.5, validate=False).kl_terms(torch.full((2, 4), 1.0))[0]
        assert float(penalised) == pytest.approx(4.0)  # above the floor: the KL itself


def test_all_raters_epochs_gives_every_rater_in_the_first_n_epochs_and_one_rater_after():
    import accelerate

    batch = {"image": torch.arange(8.0).view(8, 1, 1, 1), "mask": torch.zeros(8, 1, 2, 2),
             "masks": torch.arange(8.0).view(8, 1, 1, 1).expand(8, 4, 2, 2).clone()}
    loader_as_is = mock.patch.object(accelerate.Accelerator, "skip_first_batches", lambda self, loader, num_batches=0: iter(loader))
    with loader_as_is, latent_takeoff.what_if(_options(all_raters_epochs=2)) as record:
        accelerator = accelerate.Accelerator(cpu=True)
        epochs = [list(accelerator.skip_first_batches([batch])) for _ in range(3)]  # the loop: once an epoch
    assert record == {"all_raters": True, "all_raters_epochs": 2}
    for epoch in epochs[:2]:  # the first 2 images, each with its 4 raters in turn
        assert epoch[0]["image"].flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert epochs[2][0] is batch  # then the batch as the loader gives it


def test_all_raters_epochs_needs_a_positive_count_and_not_all_raters_as_well(capsys):
    for given in (["--all-raters-epochs", "0"], ["--all-raters", "--all-raters-epochs", "3"]):
        with pytest.raises(SystemExit):
            latent_takeoff.main([*given, "--", "--out", "unused", "--data", "bimodal", "--variant", "demo"])
        assert "--all-raters-epochs N (N >= 1)" in capsys.readouterr().err


def test_all_raters_turns_b_images_into_b_over_r_images_with_each_of_their_raters():
    masks = torch.arange(8 * 4, dtype=torch.float32).view(8, 4, 1, 1).expand(8, 4, 2, 2).clone()
    batch = {"image": torch.arange(8.0).view(8, 1, 1, 1), "masks": masks, "mask": masks[:, :1],
             "majority": masks[:, :1], "case_id": [f"c{i}" for i in range(8)]}
    out = latent_takeoff.all_raters_batch(batch)
    assert out["image"].flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert out["case_id"] == ["c0"] * 4 + ["c1"] * 4
    assert out["mask"].shape == (8, 1, 2, 2)
    assert out["mask"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # image 0's raters, then image 1's
    assert torch.equal(out["masks"][5], masks[1])


def test_the_consensus_decoder_redraws_a_mask_at_half_resolution_from_the_consensus_and_z():
    decoder = latent_takeoff.ConsensusDecoder(latent_dim=6)
    consensus, z = torch.rand(3, 1, 32, 32), torch.randn(3, 6)
    assert decoder(consensus, z).shape == (3, 1, 16, 16)
    mask = (consensus > 0.5).float()
    loss = latent_takeoff.consensus_loss(decoder, consensus, z.requires_grad_(), mask)
    loss.backward()
    assert loss.dim() == 0 and z.grad.abs().sum() > 0  # its loss reaches z, hence the posterior


def _training_forward_and_loss(model, with_consensus: bool):
    """One step as the training loop takes it: the loader hands out the batch, the model runs
    with the rater's mask, the ELBO loss is taken. Returns the loss terms."""
    import accelerate

    from tests.sam.conftest import SIZE, disc_masks, images
    from uncertainty_adapters.integrations.sam import Prompts

    masks = torch.cat([disc_masks(2), disc_masks(2).flip(-1)], 1)  # (B = 2, R = 2, S, S): two raters
    batch = {"image": images(2), "masks": masks, "mask": masks[:, :1]}
    if with_consensus:
        items = [{key: value[i] for key, value in batch.items()} for i in range(2)]
        loader = torch.utils.data.DataLoader(items, batch_size=2)
        batch = next(iter(accelerate.Accelerator(cpu=True).skip_first_batches(loader)))
    prompts = Prompts(points=torch.full((2, 1, 2), SIZE / 2), labels=torch.ones(2, 1, dtype=torch.long))
    output = model(batch["image"], prompts, masks=batch["mask"], generator=torch.Generator().manual_seed(0))
    return ua.ElboLoss(beta=1e-3, validate=False)(output.logits.float(), batch["mask"], output.kl)


@pytest.mark.parametrize("noise", ["posterior", "prior"])
def test_aux_decoder_adds_its_loss_to_training_steps_only(noise):
    from tests.sam.conftest import tiny_uncertainty_sam

    plain = _training_forward_and_loss(tiny_uncertainty_sam().train(), with_consensus=True)
    with latent_takeoff.what_if(_options(aux_decoder=2.0, aux_noise=noise)):
        model = tiny_uncertainty_sam().train()
        assert isinstance(model.latent_heads.aux_decoder, latent_takeoff.ConsensusDecoder)
        trained = _training_forward_and_loss(model, with_consensus=True)
        model.eval()
        evaluated = _training_forward_and_loss(model, with_consensus=True)
    # the ELBO's own parts are those of the plain model (the aux net draws no number of the run's);
    # only the loss gains the weighted auxiliary term
    assert torch.equal(trained.reconstruction, plain.reconstruction) and torch.equal(trained.kl, plain.kl)
    assert float((trained.loss - plain.loss).detach()) > 0.5  # 2 x a cross-entropy near log 2 at the start
    assert torch.equal(evaluated.loss, evaluated.reconstruction + 1e-3 * evaluated.kl)  # eval: nothing added
    assert not hasattr(tiny_uncertainty_sam().latent_heads, "aux_decoder")  # only inside the block


def test_the_prior_sample_term_is_the_masks_likelihood_under_the_mean_of_k_samples():
    mask = (torch.rand(2, 1, 4, 4) > 0.5).float()
    logits = torch.randn(2, 3, 4, 4)
    bernoulli = torch.sigmoid(logits) * mask + (1 - torch.sigmoid(logits)) * (1 - mask)  # p(pixel)
    likelihood = bernoulli.flatten(2).prod(-1).mean(1)  # (B,): (1 / K) sum_k prod_pixels
    expected = (-likelihood.log() / 16).mean()
    torch.testing.assert_close(latent_takeoff.prior_sample_nll(logits, mask), expected)
    same = logits[:, :1].expand(2, 3, 4, 4)  # K equal samples: the plain per-pixel cross-entropy
    torch.testing.assert_close(latent_takeoff.prior_sample_nll(same, mask),
                               torch.nn.functional.binary_cross_entropy_with_logits(logits[:, :1], mask))
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        latent_takeoff.prior_sample_nll(logits, mask[:, :, :2])


def test_the_prior_sample_term_trains_the_sample_nearest_the_raters_mask():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    near, far = 4 * (2 * mask - 1) + 0.5, torch.full((1, 1, 8, 8), 2.0)  # near draws the mask, far fills it all
    logits = torch.cat([far, near], 1).requires_grad_()
    latent_takeoff.prior_sample_nll(logits, mask).backward()
    grad = logits.grad.abs().flatten(2).sum(-1)[0]
    assert grad[1] > 1e3 * grad[0]  # the far sample is left alone: each rater trains its own mode


def test_prior_samples_add_their_term_to_training_steps_only():
    from tests.sam.conftest import tiny_uncertainty_sam

    plain = _training_forward_and_loss(tiny_uncertainty_sam().train(), with_consensus=False)
    with latent_takeoff.what_if(_options(prior_samples=2, prior_weight=0.5)) as record:
        model = tiny_uncertainty_sam().train()
        trained = _training_forward_and_loss(model, with_consensus=False)
        model.eval()
        evaluated = _training_forward_and_loss(model, with_consensus=False)
    assert record == {"prior_samples": 2, "prior_weight": 0.5}
    # the ELBO's own parts are the plain model's (the prior draws use their own generator)
    assert torch.equal(trained.reconstruction, plain.reconstruction) and torch.equal(trained.kl, plain.kl)
    assert float((trained.loss - plain.loss).detach()) > 0.1  # 0.5 x a cross-entropy near log 2 at the start
    assert torch.equal(evaluated.loss, evaluated.reconstruction + 1e-3 * evaluated.kl)  # eval: nothing added
    trained.loss.backward()
    assert model.latent_heads.prior_net.to_gaussian.weight.grad.abs().sum() > 0  # the term trains the prior net


def test_prior_samples_need_two_samples_and_latent_takeoff_trains_ua_sam_only(tmp_path, capsys):
    base = ["--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "demo"]
    with pytest.raises(SystemExit):
        latent_takeoff.main(["--prior-samples", "1", *base])
    assert "at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        latent_takeoff.main(["--prior-weight", "2", *base])
    assert "give --prior-samples K too" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="changes UA-SAM's latent"):
        latent_takeoff.main(["--prior-samples", "2", *base, "--model", "prob-unet"])
    assert not (tmp_path / "runs").exists()


def _a_loop_at(step: int, planned: int, latent_lr: float = 1e-3):
    """What `AggressivePosterior` reads of the training loop, at ``step`` of ``planned``."""
    from types import SimpleNamespace

    from uncertainty_adapters.integrations.pipeline.presets import get_preset

    preset = get_preset("demo").replace(latent_lr=latent_lr)
    return SimpleNamespace(progress=SimpleNamespace(step=step), planned_steps=planned, preset=preset,
                           loss_fn=ua.ElboLoss(beta=1e-3, validate=False, free_bits=0.5),
                           _kl_for_loss=lambda output: output.kl_per_dim)


def _a_training_step():
    """A perturbed tiny UA-SAM in training mode (z reaches its output, so the posterior gets a
    gradient) and one step's inputs for `AggressivePosterior.before_step`: (model, inputs)."""
    from tests.sam.conftest import SIZE, disc_masks, images, perturb_trainable, tiny_uncertainty_sam
    from uncertainty_adapters.integrations.sam import Prompts
    from uncertainty_adapters.integrations.sam.model import UncertaintySam

    model = tiny_uncertainty_sam().train()
    perturb_trainable(model)
    prompts = Prompts(points=torch.full((2, 1, 2), SIZE / 2), labels=torch.ones(2, 1, dtype=torch.long))
    return model, (model, images(2), prompts, disc_masks(2), UncertaintySam.forward)


def test_aggressive_posterior_steps_train_the_posterior_alone_and_only_early():
    model, inputs = _a_training_step()
    aggressive = latent_takeoff.AggressivePosterior(steps=3, share=0.25)
    aggressive.bind(_a_loop_at(step=0, planned=8))  # active while step < 2
    before = {name: value.clone() for name, value in model.trainable_state_dict().items()}
    aggressive.before_step(*inputs)
    after = model.trainable_state_dict()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("latent_heads.posterior_net.") for name in moved)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind for the ordinary step
    assert aggressive.inner_steps == 3
    aggressive.bind(_a_loop_at(step=2, planned=8))  # past the share: nothing
    aggressive.before_step(*inputs)
    assert aggressive.inner_steps == 3
    assert all(torch.equal(after[name], value) for name, value in model.trainable_state_dict().items())


def _aggressive_before_step(check: str, latent_lr: float):
    """`AggressivePosterior` (3 steps at most, ``check``) run once on `_a_training_step`:
    (it, the model's trainable weights before, the model)."""
    model, inputs = _a_training_step()
    aggressive = latent_takeoff.AggressivePosterior(steps=3, share=1.0, check=check)
    aggressive.bind(_a_loop_at(step=0, planned=8, latent_lr=latent_lr))
    before = {name: value.clone() for name, value in model.trainable_state_dict().items()}
    aggressive.before_step(*inputs)
    return aggressive, before, model


@pytest.mark.parametrize("check", latent_takeoff.AggressivePosterior.CHECKS)
def test_the_aggressive_check_undoes_a_step_that_raises_the_objective_and_ends_the_loop(check):
    aggressive, before, model = _aggressive_before_step(check, latent_lr=100.0)  # steps of 100: overshoot
    assert (aggressive.inner_steps, aggressive.undone) == (0, 1)  # the first step was undone and ended the loop
    assert all(torch.equal(before[name], value) for name, value in model.trainable_state_dict().items())
    assert aggressive.optimizer.state_dict()["state"] == {}  # its Adam state too
    assert all(p.grad is None for p in model.parameters())


def test_the_same_z_check_keeps_small_descent_steps():
    # on the draws the step was taken on, a small enough step down the gradient lowers the objective
    aggressive, before, model = _aggressive_before_step("same-z", latent_lr=1e-6)
    assert (aggressive.inner_steps, aggressive.undone) == (3, 0)
    after = model.trainable_state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before if ".posterior_net." in name)


def test_aggressive_posterior_runs_inside_a_training_loop_and_records_its_steps(tmp_path):
    from tests.pipeline.conftest import SIZE as PIPELINE_SIZE, job
    from uncertainty_adapters.integrations.pipeline.training.loop import train
    from uncertainty_adapters.integrations.sam import build_sam, save_sam_weights

    torch.manual_seed(0)
    backbone = tmp_path / "sam.safetensors"
    save_sam_weights(build_sam("demo", image_size=PIPELINE_SIZE), backbone)
    with latent_takeoff.what_if(_options(aggressive_posterior=3, aggressive_share=0.5)) as record:
        train(job(tmp_path / "run", max_steps=2, checkpoint_every=1000), backbone=backbone)  # planned: 2
    assert record == {"aggressive_posterior": 3, "aggressive_share": 0.5, "aggressive_inner_steps": 3}


def test_aggressive_posterior_needs_a_step_and_a_share_in_range(tmp_path, capsys):
    base = ["--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "demo"]
    for given, message in ((["--aggressive-posterior", "0"], "at least 1"),
                           (["--aggressive-posterior", "2", "--aggressive-share", "0"], "must lie in (0, 1]"),
                           (["--aggressive-share", "0.5"], "give --aggressive-posterior N too"),
                           (["--aggressive-check", "same-z"], "give --aggressive-posterior N too")):
        with pytest.raises(SystemExit):
            latent_takeoff.main([*given, *base])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _trained_looking(prompt: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        prompt.net[-1].weight.normal_(0, 0.3)
    return prompt


@pytest.mark.parametrize("form", sorted(latent_takeoff.PROMPT_FORMS))
def test_each_prompt_form_starts_as_the_identity_and_pairs_sample_i_with_embedding_i(form):
    prompt = latent_takeoff.PROMPT_FORMS[form](latent_dim=6, embed_dim=32)
    embeddings, z = torch.randn(6, 32, 8, 8), torch.randn(2, 3, 6)  # B = 2 images, K = 3 samples
    assert torch.equal(prompt(embeddings, z), embeddings)
    _trained_looking(prompt)
    shifted = prompt(embeddings, z)
    one = prompt(embeddings[4:5], z[1, 1:2])  # image 1, sample 1 = row 4 of the image-major batch
    torch.testing.assert_close(shifted[4:5], one)
    with pytest.raises(ValueError, match="pairs embedding i with sample i"):
        prompt(embeddings, torch.randn(2, 6))


def test_film_scales_each_channel_by_z_and_fcomb_reads_z_with_each_positions_embedding():
    embeddings = torch.randn(1, 32, 8, 8)
    z = torch.randn(1, 6)
    film = _trained_looking(latent_takeoff.FilmLatentPrompt(latent_dim=6, embed_dim=32))
    # film: the change z makes is gamma * embedding + beta, an affine function of each channel
    twice = film(2 * embeddings, z) - film(embeddings, z)
    torch.testing.assert_close(twice, film(embeddings, z) - film(torch.zeros_like(embeddings), z))
    # ...whose gain is z's: another z scales the same embedding differently
    other = torch.randn(1, 6)
    assert not torch.allclose(twice, film(2 * embeddings, other) - film(embeddings, other))
    fcomb = _trained_looking(latent_takeoff.FcombLatentPrompt(latent_dim=6, embed_dim=32))
    # fcomb: the same z shifts two positions differently when the embedding differs there
    shift = fcomb(embeddings, z) - embeddings
    assert not torch.allclose(shift[..., 0, 0], shift[..., 3, 5])
    flat = torch.ones(1, 32, 8, 8)  # ...and alike where the embedding is alike
    flat_shift = fcomb(flat, z) - flat
    torch.testing.assert_close(flat_shift, flat_shift[..., :1, :1].expand_as(flat_shift))


@pytest.mark.parametrize("form", sorted(latent_takeoff.PROMPT_FORMS))
def test_prompt_form_replaces_the_latent_prompt_only_inside_the_block(form):
    from uncertainty_adapters.integrations.sam.latent_prompt import LatentDensePrompt

    from tests.sam.conftest import tiny_uncertainty_sam

    with latent_takeoff.what_if(_options(prompt_form=form)) as record:
        model = tiny_uncertainty_sam(latent_prompt=True)
    assert type(model.latent_prompt) is latent_takeoff.PROMPT_FORMS[form] and record == {"prompt_form": form}
    assert type(tiny_uncertainty_sam(latent_prompt=True).latent_prompt) is LatentDensePrompt


def test_prompt_form_needs_a_variant_with_a_latent_prompt(tmp_path):
    with pytest.raises(SystemExit, match="does not have"):
        latent_takeoff.main(["--prompt-form", "film", "--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "paper"])
    assert not (tmp_path / "runs").exists()


def test_a_run_needs_a_change_and_a_fresh_out(tmp_path, capsys):
    for no_change in ([], ["--aux-noise", "posterior"]):
        with pytest.raises(SystemExit):
            latent_takeoff.main([*no_change, "--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "demo"])
        assert "at least one change" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        latent_takeoff.main(["--aux-noise", "prior", "--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "demo"])
    assert "give --aux-decoder W too" in capsys.readouterr().err
    (tmp_path / "runs" / "bimodal-demo").mkdir(parents=True)
    for change in (["--posterior-sigma", "0.4"], ["--init-seed", "0"], ["--step-seed", "0"]):  # seed 0 is a change too
        with pytest.raises(SystemExit, match="fresh --out"):
            latent_takeoff.main([*change, "--", "--out", str(tmp_path), "--data", "bimodal", "--variant", "demo"])


def test_help_lists_the_changes_without_diagnose_latents_arguments(capsys):
    with pytest.raises(SystemExit) as stop:
        latent_takeoff.main(["--help"])
    assert stop.value.code == 0 and "--all-raters" in capsys.readouterr().out


def test_init_seed_draws_the_initial_weights_of_another_seed_and_keeps_the_rest_of_the_run(tmp_path):
    from dataclasses import replace

    from tests.pipeline.conftest import SIZE as PIPELINE_SIZE, job
    from uncertainty_adapters.integrations.pipeline.training.loop import _TrainingLoop
    from uncertainty_adapters.integrations.sam import build_sam, save_sam_weights

    torch.manual_seed(0)
    backbone = tmp_path / "sam.safetensors"
    save_sam_weights(build_sam("demo", image_size=PIPELINE_SIZE), backbone)

    def start(seed: int, init_seed: int | None = None) -> _TrainingLoop:
        run = replace(job(tmp_path / f"run-{seed}-{init_seed}"), seed=seed)
        if init_seed is None:
            return _TrainingLoop(run, backbone)
        with latent_takeoff.what_if(_options(init_seed=init_seed)) as record:
            loop = _TrainingLoop(run, backbone)
        assert record == {"init_seed": init_seed}
        return loop

    def batch_order(loop: _TrainingLoop) -> list[torch.Tensor]:  # the first two batches' images and rater masks
        return [torch.cat([batch["image"], batch["mask"]], 1) for batch, _ in zip(loop.train_loader, range(2))]

    swapped, weights_of, rest_of = start(0, init_seed=1), start(1), start(0)
    weights = swapped.unwrapped.state_dict()
    assert weights.keys() == weights_of.unwrapped.state_dict().keys()
    assert all(torch.equal(weights[key], weights_of.unwrapped.state_dict()[key]) for key in weights)
    assert not all(torch.equal(weights[key], rest_of.unwrapped.state_dict()[key]) for key in weights)
    assert swapped.train_idx == rest_of.train_idx != weights_of.train_idx  # the split is the run's own
    swapped_order, own_order = batch_order(swapped), batch_order(rest_of)  # the batches and their raters too
    assert all(torch.equal(a, b) for a, b in zip(swapped_order, own_order, strict=True))


def test_step_seed_draws_each_training_steps_clicks_and_noise_from_another_seed_and_nothing_else():
    from uncertainty_adapters.integrations.pipeline.training import loop

    def draws(seed: int, stream: int) -> torch.Tensor:
        return torch.rand(4, generator=loop.generator_for("cpu", seed, stream, 7, 0))  # batch 7, rank 0

    with latent_takeoff.what_if(_options(step_seed=1)) as record:
        swapped_step, swapped_validation = draws(0, loop._TRAIN_STREAM), draws(0, loop._VAL_STREAM)
    assert record == {"step_seed": 1}
    assert torch.equal(swapped_step, draws(1, loop._TRAIN_STREAM))
    assert not torch.equal(swapped_step, draws(0, loop._TRAIN_STREAM))
    assert torch.equal(swapped_validation, draws(0, loop._VAL_STREAM))  # validation keeps the run's own draws


@pytest.mark.parametrize("with_box", [False, True])
def test_token_form_puts_z_in_the_prompt_tokens_and_starts_as_the_demos_model(with_box):
    from uncertainty_adapters.integrations.sam.prompts import Prompts

    from tests.sam.conftest import SIZE, images, tiny_uncertainty_sam

    x, z = images(2), torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(3))
    points, labels = torch.tensor([[[10.0, 12.0]], [[20.0, 8.0]]]), torch.ones(2, 1)
    prompts = Prompts(points, labels, torch.tensor([[2.0, 2.0, SIZE - 3.0, SIZE - 3.0]] * 2) if with_box else None)
    demo = tiny_uncertainty_sam(latent_prompt=True)
    with latent_takeoff.what_if(_options(prompt_form="token")):
        model = tiny_uncertainty_sam(latent_prompt=True)
        model.load_state_dict(demo.state_dict(), strict=False)  # the same weights; token_net starts at zero
        with torch.no_grad():
            def logits(zz):
                return model.decode(model.encode(x, zz), prompts.repeat_interleave(3))

            if not with_box:  # adding zero to SAM's padding token changes nothing
                torch.testing.assert_close(logits(z), demo.decode(demo.encode(x, z), prompts.repeat_interleave(3)))
            model.latent_prompt.token_net[-1].weight.normal_(0, 0.3)  # trained-looking token path only
            first = logits(z)
            # the dense shift is still zero: what z changes now, it changes through the token
            assert not torch.allclose(first[0], first[1])
            one = model.decode(model.encode(x[1:], z[1, 2:3][None]), Prompts(points[1:], labels[1:],
                                                                           prompts.boxes[1:] if with_box else None))
            torch.testing.assert_close(first[5:6], one)  # image 1, sample 2: tokens pair with their samples
            six = model.encode(x, z)
            with pytest.raises(ValueError, match="2 embeddings decoded after an encode of 6 samples"):
                model.decode(six[:2], prompts)
