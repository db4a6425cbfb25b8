"""What-if runs of `benchmarks.diagnose_latent`: one change to how UA-SAM's latent trains, for one run.

Each option below changes one thing the library does to UA-SAM's latent, in this process only
(what each was meant to test, and what it measured: docs/results.md, "Why the latent takes hold
on some seeds only"), and then trains and measures exactly as
``python -m benchmarks.diagnose_latent`` does with the arguments after ``--``; the result JSON
gets a ``what_if`` entry naming the change, so it compares with the plain runs' figures
(diversity against the raters', GED, the KL trace, the posterior's spread)::

    python -m benchmarks.latent_takeoff --posterior-sigma 0.4 -- --out D --data bimodal --variant demo-relu --seed 3

The changes (any combination):

- ``--posterior-sigma S``: the posterior net starts at sigma S instead of ``init_sigma`` (the
  prior is unchanged): less noise on z while the decoder learns to read it;
- ``--posterior-gain G``: the mean half of the posterior net's last layer starts G times larger,
  so the rater's mask moves z G times further at first;
- ``--total-free-bits``: free bits floor the KL summed over the C latent dimensions at
  C * free_bits, instead of each dimension at free_bits, so that one dimension may carry the
  whole decision unpenalised;
- ``--all-raters``: each step trains on the first B / R images of its batch of B, each with all
  R of its raters (the same number of masks per step; an epoch sees 1 / R of the images);
  ``--all-raters-epochs N`` does so in the first N epochs only, and trains one rater per image
  after them (a start for the latent, without seeing fewer images for the whole run);
- ``--aux-decoder W``: an auxiliary loss against latent collapse, weighted W. A small conv net
  (`ConsensusDecoder`, training only) redraws the rater's mask from the raters' mean mask and
  the posterior's z, so z must carry what sets this rater apart from the others from the first
  step, whether or not SAM's path reads it yet. ``--aux-noise prior`` gives that net the
  posterior's mean plus noise at the prior's sigma (detached) instead of the posterior's own
  sample, so the raters must lie apart at the prior's scale to be told apart, rather than
  at a posterior sigma shrunk to almost nothing. The auxiliary net is saved with the latent
  heads (``latent_heads.aux_decoder.*``), so such a run folder loads only under the same change.
- ``--prompt-form F``: how z enters SAM's mask decoder as a dense prompt (the demo's
  ``latent_prompt``), in place of one vector MLP(z) added at every position
  (`LatentDensePrompt`). ``film``: z also scales each channel, embedding * (1 + gamma(z)) +
  beta(z) (`FilmLatentPrompt`), so z's effect at a position grows with what the image has
  there. ``fcomb``: a per-position MLP of the embedding and z tiled over the positions, added
  to the embedding (`FcombLatentPrompt`), as the Probabilistic U-Net's fcomb combines z with its
  last feature map. ``token``: the demo's dense shift, and a second MLP(z) added to the prompt's
  padding token, so z also enters the decoder's two-way attention the way SAM's clicks do
  (`TokenLatentPrompt`). Each starts as the variant's ``latent_prompt_start`` says (the demo's:
  zero, the identity); the run folder's ``latent_prompt.safetensors`` then holds the new form's
  weights, so it too loads only under the same change.

- ``--prior-samples K`` (``--prior-weight W``, default 1): add W times the rater mask's negative
  log-likelihood under K fresh prior samples, -(1 / HW) log((1 / K) sum_k p(Y | z_k)) with
  z_k ~ P(z|X) (`prior_sample_nll`; the Monte Carlo estimate of log p(Y|X) with the prior as
  proposal, which Stochastic Segmentation Networks train on). The sample nearest the rater's mask
  takes almost all of its gradient, so the prior's own samples are pulled towards the raters' modes
  from the first step, whether or not the posterior has told the raters apart yet. Each training
  step encodes and decodes K more samples (its cost: benchmarks/RESULTS.md, section 13).

- ``--aggressive-posterior N`` (``--aggressive-share S``, default 0.25): the "lagging inference
  network" remedy of He et al. (2019) against posterior collapse. During the first S of the
  planned training steps, before each step, the posterior net alone takes N Adam steps of its own
  (`AggressivePosterior`: a separate optimizer at the preset's latent learning rate) on that
  step's batch with that step's objective (the loop's own ELBO, beta and free bits), so it
  catches up with what the decoder reads from z before the decoder moves. Its z draws come from
  a generator of its own; the step itself is then the ordinary one. Each of those steps costs
  about N + 1 ordinary ones. (He et al. draw a fresh batch per inner step, run to convergence and
  end the phase when the mutual information stops rising; this runs a fixed N on the step's
  batch for a fixed share, and its ordinary steps update the posterior too.) With
  ``--aggressive-check fresh-z|same-z`` an inner step that does not lower the batch's objective,
  taken again on fresh z draws or on the draws the step was taken on, is undone and ends that
  step's inner loop: He et al.'s stop at convergence, checked after every inner step; it costs
  one more forward per inner step.

- ``--init-seed N``: the model's initial weights (the adapters, the latent nets, z's prompt; the
  backbone is the shipped file either way) are drawn as a run with ``--seed N`` draws them, while
  everything else the run's own seed sets stays its own: the train / validation split, the order
  of the batches, which rater each image gets, and the noise on z. Swapping the two between a
  seed whose latent takes hold and one whose latent does not tells whether the initial weights or
  the rest of the run decide it. ``--step-seed N`` does the same for each training step's own
  draws (the clicks' positions and the noise on z), which then come from seed N's streams, while
  the initial weights, the split, the batch order and the raters stay the run's own.

These are experiments, not library options. Three changes measured beside them are library
options instead: LeakyReLU in the prior and posterior nets (``LatentHeads(activation=
"leaky_relu")``, the demo preset's; ``--variant demo-relu`` trains ReLU), all raters per step,
drawn by a sampler rather than cut from a batch of B (the preset field
``raters_per_image="all"``, integrations/pipeline/training/rater_batches.py; ``--variant
demo-all-raters``), and a warm-up of the posterior's noise on z (the preset field
``posterior_noise_warmup``; ``--variant demo-noise-warmup``), first measured as a what-if of
this module (``--noise-warmup 0.25``, commit 44e15ee). Each run needs a fresh ``--out``: a run
folder already there would be measured as it is, without the change.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import torch
from torch import nn

from uncertainty_adapters.integrations.sam.latent_prompt import LatentDensePrompt, paired_samples, start_last_layer


def scale_posterior_mean(heads: nn.Module, gain: float) -> None:
    """Multiply the mean half of the posterior net's last layer (its weights) by ``gain``."""
    encoder = heads.posterior_net
    with torch.no_grad():
        encoder.to_gaussian.weight[: encoder.latent_dim] *= gain


def total_free_bits_kl_terms(loss, kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`ElboLoss.kl_terms` with the floor on the total: max(C * free_bits, sum_d mean_b KL_bd)."""
    if kl.dim() == 2:
        total = kl.mean(0).sum()
        floor = loss.free_bits * kl.shape[1]
        return (total.clamp_min(floor) if floor > 0 else total), total
    kl = kl.mean()
    return kl, kl


def all_raters_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The first B / R images of ``batch`` (B images, R raters each), each repeated once per
    rater, with ``mask`` the raters' masks in turn: B (image, rater) pairs again
    (`rater_batches.with_every_rater` on the batch's first B / R images)."""
    from uncertainty_adapters.integrations.pipeline.training.rater_batches import with_every_rater

    size, raters = batch["masks"].shape[:2]
    keep = max(1, size // raters)
    head = {key: value[:keep] if (torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == size)
            or (isinstance(value, (list, tuple)) and len(value) == size) else value
            for key, value in batch.items()}
    return with_every_rater(head)


class ConsensusDecoder(nn.Module):
    """The rater's mask from the raters' mean mask and z, at half resolution (training only).

    (consensus (B, 1, H, W) in [0, 1], z (B, C)) -> logits (B, 1, H / 2, W / 2): three 3 x 3
    convolutions of width 32 (LeakyReLU) and a 1 x 1 one, on the consensus with z tiled over
    the pixels. Where the raters agree the consensus alone gives the answer; where they do not,
    only z can say which way this rater went.
    """

    def __init__(self, latent_dim: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1 + latent_dim
        for _ in range(3):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.1)]
            channels = width
        layers.append(nn.Conv2d(width, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, consensus: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.avg_pool2d(consensus, 2)
        tiled = z[:, :, None, None].expand(-1, -1, *small.shape[-2:])
        return self.net(torch.cat([small, tiled.to(small.dtype)], dim=1))


def consensus_loss(decoder: ConsensusDecoder, consensus: torch.Tensor, z: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of `decoder`'s redrawing against ``mask`` (B, 1, H, W) pooled to
    the decoder's half resolution (a soft target where a pixel is partly inside)."""
    target = torch.nn.functional.avg_pool2d(mask.float(), 2)
    return torch.nn.functional.binary_cross_entropy_with_logits(decoder(consensus.float(), z.float()), target)


def prior_sample_nll(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rater mask's negative log-likelihood under K prior samples, per pixel, batch mean.

    ``logits`` (B, K, H, W) decoded from z_1..z_K ~ P(z|X), ``mask`` (B, 1, H, W) the rater's:
    -(1 / HW) log((1 / K) sum_k prod_pixels Bernoulli(mask | sigmoid(logits_k))), averaged over B.
    The Monte Carlo estimate of log p(Y|X) with the prior as proposal (in expectation a lower
    bound that tightens with K), as Stochastic Segmentation Networks train; since the sum over pixels
    separates the samples by many nats, each rater's mask mostly trains the sample closest to it.
    """
    if logits.dim() != 4 or mask.shape != (logits.shape[0], 1, *logits.shape[-2:]):
        raise ValueError(f"logits must be (B, K, H, W) and mask (B, 1, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(mask.shape)}")
    target = mask.to(logits.dtype).expand_as(logits)
    nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).sum(-1)
    log_likelihood = torch.logsumexp(-nll, dim=1) - math.log(logits.shape[1])  # (B,)
    return (-log_likelihood / logits[0, 0].numel()).mean()


class FilmLatentPrompt(nn.Module):
    """z scales and shifts each channel of the image embedding: embedding * (1 + gamma) + beta.

    (gamma, beta) = MLP(z), each (N, D); with ``start="zero"`` the MLP's last layer starts at
    zero, so the module starts as the identity. Same contract as `LatentDensePrompt`: embeddings (N, D, h, w) and z
    (N, C), or (B, K, C) with N = B * K image-major -> (N, D, h, w); ``start`` as there.
    """

    def __init__(self, latent_dim: int, embed_dim: int, hidden_dim: int = 64, start: str = "zero") -> None:
        super().__init__()
        self.latent_dim, self.embed_dim = latent_dim, embed_dim
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 2 * embed_dim))
        start_last_layer(self.net[-1], start)

    def forward(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z = paired_samples(self, embeddings, z)
        gamma, beta = self.net(z.to(embeddings.dtype))[:, :, None, None].chunk(2, dim=1)
        return embeddings * (1 + gamma) + beta


class FcombLatentPrompt(nn.Module):
    """A per-position MLP of the embedding and z, added to the embedding.

    shift = Conv1x1(GELU(Conv1x1([embedding, z tiled over the positions]))), (N, D, h, w), with
    z's part of the first convolution computed once per sample and broadcast; with
    ``start="zero"`` the last convolution starts at zero, so the module starts as the identity.
    Same contract as `LatentDensePrompt`, ``start`` included.
    """

    def __init__(self, latent_dim: int, embed_dim: int, hidden_dim: int = 64, start: str = "zero") -> None:
        super().__init__()
        self.latent_dim, self.embed_dim = latent_dim, embed_dim
        self.net = nn.Sequential(nn.Conv2d(embed_dim + latent_dim, hidden_dim, 1), nn.GELU(),
                                 nn.Conv2d(hidden_dim, embed_dim, 1))
        start_last_layer(self.net[-1], start)

    def forward(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z = paired_samples(self, embeddings, z)
        first, act, last = self.net
        # The first 1 x 1 convolution of [embedding, z tiled] is its embedding part plus its z part,
        # which is the same at every position: computed once per sample and broadcast.
        weight = first.weight[:, :, 0, 0]
        hidden = torch.nn.functional.conv2d(embeddings, first.weight[:, : self.embed_dim], first.bias)
        hidden = hidden + (z.to(embeddings.dtype) @ weight[:, self.embed_dim:].T)[:, :, None, None]
        return embeddings + last(act(hidden))


class TokenLatentPrompt(LatentDensePrompt):
    """The demo's dense prompt, and z as a prompt token of SAM's mask decoder as well.

    A second MLP(z) (same shape as the dense one, its last layer started as ``start`` says) is
    added to the prompt's "not a point" token, the padding token SAM appends to a point-only
    prompt (with a box, where SAM appends none, it is appended as a token of its own: the "not
    a point" embedding plus MLP(z)). SAM's decoder chooses which region a click means through
    its prompt tokens: they attend to the image embedding and the image attends back to them,
    so a token can switch a region (a satellite lobe, a disc's centre) in or out by what the
    image shows there, where one vector added at every position shifts every outline alike.
    With ``start="zero"`` the module starts as the identity.

    `forward` (the dense shift, called by `UncertaintySam.encode`) keeps the samples' tokens
    (N, D) for the decode that follows (`_token_decode`), which checks they pair one to one.
    """

    def __init__(self, latent_dim: int, embed_dim: int, hidden_dim: int = 64, start: str = "zero") -> None:
        super().__init__(latent_dim, embed_dim, hidden_dim, start)
        self.token_net = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim))
        start_last_layer(self.token_net[-1], start)
        self.pending_tokens: torch.Tensor | None = None

    def forward(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        flat = paired_samples(self, embeddings, z)
        self.pending_tokens = self.token_net(flat.to(embeddings.dtype))
        return super().forward(embeddings, z)


def _token_decode(self, embeddings: torch.Tensor, prompts) -> torch.Tensor:
    """`UncertaintySam.decode` with a `TokenLatentPrompt`'s tokens in the prompt (plain decode otherwise)."""
    from uncertainty_adapters.integrations.sam.decoder import predict_single_masks
    from uncertainty_adapters.integrations.sam.prompt_embedding import encode_prompts
    from uncertainty_adapters.integrations.sam.sam_forward import decode_prompts

    tokens = getattr(self.latent_prompt, "pending_tokens", None)
    if tokens is None:
        return decode_prompts(self.prompt_encoder, self.mask_decoder, embeddings, prompts)
    if tokens.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings decoded after an encode of {tokens.shape[0]} samples")
    prompts = prompts.to(embeddings.device)
    encoder = self.prompt_encoder
    sparse, dense = encode_prompts(encoder, prompts.points, prompts.labels, prompts.boxes)
    tokens = tokens.to(sparse.dtype)[:, None]
    if prompts.points is not None and prompts.boxes is None:  # the last token is SAM's "not a point" pad
        sparse = torch.cat([sparse[:, :-1], sparse[:, -1:] + tokens], dim=1)
    else:
        sparse = torch.cat([sparse, encoder.not_a_point_embed.weight.to(sparse.dtype)[None] + tokens], dim=1)
    low_res = predict_single_masks(self.mask_decoder, embeddings, encoder.get_dense_pe(), sparse, dense)
    return nn.functional.interpolate(low_res, tuple(encoder.input_image_size), mode="bilinear", align_corners=False)


PROMPT_FORMS = {"film": FilmLatentPrompt, "fcomb": FcombLatentPrompt, "token": TokenLatentPrompt}


@contextlib.contextmanager
def what_if(options: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Apply the changes ``options`` asks for while the block runs; yields their record."""
    import accelerate

    from uncertainty_adapters import latent_heads, losses
    from uncertainty_adapters.integrations.pipeline.training import loop

    record: dict[str, Any] = {}
    aggressive = None
    with contextlib.ExitStack() as stack:
        changes = []
        if options.posterior_sigma is not None:
            record["posterior_sigma"] = options.posterior_sigma
            changes.append(lambda heads: heads.posterior_net.set_initial_sigma(options.posterior_sigma))
        if options.posterior_gain is not None:
            record["posterior_gain"] = options.posterior_gain
            changes.append(lambda heads: scale_posterior_mean(heads, options.posterior_gain))
        if options.aux_decoder is not None:
            record["aux_decoder"] = options.aux_decoder
            changes.append(lambda heads: setattr(heads, "aux_decoder", ConsensusDecoder(heads.latent_dim)))
            record["aux_noise"] = options.aux_noise
            stack.enter_context(_consensus_loss_patches(options.aux_decoder, options.aux_noise,
                                                        options.all_raters or options.all_raters_epochs is not None))
        if changes:
            original_init = latent_heads.LatentHeads.__init__

            def init(self, *args, **kwargs):
                original_init(self, *args, **kwargs)
                for change in changes:
                    change(self)

            stack.enter_context(mock.patch.object(latent_heads.LatentHeads, "__init__", init))
        if options.prompt_form is not None:
            from uncertainty_adapters.integrations.sam import model as sam_model

            record["prompt_form"] = options.prompt_form
            stack.enter_context(mock.patch.object(sam_model, "LatentDensePrompt", PROMPT_FORMS[options.prompt_form]))
            if options.prompt_form == "token":
                stack.enter_context(mock.patch.object(sam_model.UncertaintySam, "decode", _token_decode))
        if options.prior_samples is not None:
            record["prior_samples"] = options.prior_samples
            record["prior_weight"] = options.prior_weight
            stack.enter_context(_prior_sample_patches(options.prior_samples, options.prior_weight))
        if options.aggressive_posterior is not None:
            aggressive = AggressivePosterior(options.aggressive_posterior, options.aggressive_share,
                                             options.aggressive_check)
            record["aggressive_posterior"] = options.aggressive_posterior
            record["aggressive_share"] = options.aggressive_share
            if options.aggressive_check:
                record["aggressive_check"] = options.aggressive_check
            stack.enter_context(_aggressive_posterior_patches(aggressive))
        if options.init_seed is not None:
            record["init_seed"] = options.init_seed
            build_model = loop.build_model

            def build_with_init_seed(*args, **kwargs):
                # torch's global generators stay the run's own afterwards: accelerate seeds the batch order
                # from their initial seed when the loader is prepared
                with torch.random.fork_rng():
                    loop.seed_everything_for(options.init_seed)
                    return build_model(*args, **kwargs)

            stack.enter_context(mock.patch.object(loop, "build_model", build_with_init_seed))
        if options.step_seed is not None:
            record["step_seed"] = options.step_seed
            generator_for = loop.generator_for

            def step_generator_for(device, seed, stream, *parts):
                return generator_for(device, options.step_seed if stream == loop._TRAIN_STREAM else seed, stream, *parts)

            stack.enter_context(mock.patch.object(loop, "generator_for", step_generator_for))
        if options.total_free_bits:
            record["total_free_bits"] = True
            stack.enter_context(mock.patch.object(losses.ElboLoss, "kl_terms", total_free_bits_kl_terms))
        if options.all_raters or options.all_raters_epochs is not None:
            record["all_raters"] = True
            if options.all_raters_epochs is not None:
                record["all_raters_epochs"] = options.all_raters_epochs
            original_skip = accelerate.Accelerator.skip_first_batches
            epochs_begun = [0]  # the loop asks for each epoch's batches once (what-if runs never resume)

            def skip_first_batches(self, loader, num_batches=0):
                epoch = epochs_begun[0]
                epochs_begun[0] += 1
                every_rater = options.all_raters_epochs is None or epoch < options.all_raters_epochs
                for batch in original_skip(self, loader, num_batches):
                    yield all_raters_batch(batch) if every_rater else batch

            stack.enter_context(mock.patch.object(accelerate.Accelerator, "skip_first_batches", skip_first_batches))
        yield record
        if aggressive is not None:
            record["aggressive_inner_steps"] = aggressive.inner_steps
            if aggressive.check:
                record["aggressive_undone"] = aggressive.undone


@contextlib.contextmanager
def _training_forward_hooks(before=None, after=None) -> Iterator[None]:
    """Call ``before(model, images, prompts, masks, forward)`` ahead of, and ``after(model, images,
    prompts, masks, output)`` behind, each forward of UA-SAM in training mode with a rater mask and a
    latent (``forward`` is the unhooked one). Validation (eval mode) and the prior-fit phase, which
    does not run the model, are left as they are."""
    from uncertainty_adapters.integrations.sam import model as sam_model

    original_forward = sam_model.UncertaintySam.forward

    def forward(self, images, prompts, masks=None, num_samples=1, generator=None, **kwargs):
        hooked = self.training and masks is not None and self.latent_heads is not None
        if hooked and before is not None:
            before(self, images, prompts, masks, original_forward)
        output = original_forward(self, images, prompts, masks=masks, num_samples=num_samples, generator=generator,
                                  **kwargs)
        if hooked and after is not None:
            after(self, images, prompts, masks, output)
        return output

    with mock.patch.object(sam_model.UncertaintySam, "forward", forward):
        yield


@contextlib.contextmanager
def _extra_training_loss(term) -> Iterator[None]:
    """Add ``term(model, images, prompts, masks, output)`` (a scalar tensor, or None for nothing)
    to the ELBO loss of each training forward with a rater mask; the loss call of that step adds
    it. Validation (eval mode) and the prior-fit phase are left as they are."""
    from uncertainty_adapters import losses

    pending: list[torch.Tensor] = []
    original_loss = losses.ElboLoss.forward

    def after(model, images, prompts, masks, output):
        extra = term(model, images, prompts, masks, output)
        pending[:] = [] if extra is None else [extra]

    def loss_forward(self, logits, target, kl):
        terms = original_loss(self, logits, target, kl)
        if not pending:
            return terms
        return terms._replace(loss=terms.loss + pending.pop())

    with _training_forward_hooks(after=after), mock.patch.object(losses.ElboLoss, "forward", loss_forward):
        yield


@contextlib.contextmanager
def _consensus_loss_patches(weight: float, noise: str, all_raters: bool) -> Iterator[None]:
    """Add ``weight * consensus_loss`` to each training step's ELBO loss.

    The raters' mean mask of each training batch is kept when the loader hands the batch out;
    a training forward with a rater mask computes the auxiliary loss from its posterior z; the
    loss call of that step adds it. Validation (eval mode) is left as it is.
    """
    import accelerate

    if all_raters:
        raise SystemExit("--aux-decoder with --all-raters is not wired; run them apart")
    state: dict[str, torch.Tensor] = {}
    draws = torch.Generator().manual_seed(0)  # the aux net's own noise; the run's streams are untouched
    original_skip = accelerate.Accelerator.skip_first_batches

    def skip_first_batches(self, loader, num_batches=0):
        for batch in original_skip(self, loader, num_batches):
            state["consensus"] = batch["masks"].float().mean(1, keepdim=True)
            yield batch

    def term(model, images, prompts, masks, output):
        if output.z is None or "consensus" not in state:
            return None
        heads = model.latent_heads
        z = output.z[:, 0]
        if noise == "prior":
            sigma = heads.prior(images).sigma.detach()
            eps = torch.randn(sigma.shape, generator=draws).to(sigma)
            z = heads.posterior(images, masks).mean + sigma * eps
        return weight * consensus_loss(heads.aux_decoder, state.pop("consensus"), z, masks)

    with mock.patch.object(accelerate.Accelerator, "skip_first_batches", skip_first_batches), \
            _extra_training_loss(term):
        yield


@contextlib.contextmanager
def _prior_sample_patches(samples: int, weight: float) -> Iterator[None]:
    """Add ``weight * prior_sample_nll`` of ``samples`` fresh prior draws to each training step's
    ELBO loss. The draws use their own generator, so the run's own random streams are untouched;
    validation (eval mode) and the prior-fit phase are left as they are."""
    draws: dict[torch.device, torch.Generator] = {}

    def term(model, images, prompts, masks, output):
        if images.device not in draws:
            draws[images.device] = torch.Generator(device=images.device).manual_seed(0)
        generator = draws[images.device]
        z = model.latent_heads.prior(images).rsample(samples, generator=generator)  # (B, K, C)
        logits = model.decode(model.encode(images, z), prompts.repeat_interleave(samples))
        logits = logits.view(images.shape[0], samples, *logits.shape[-2:]).float()
        return weight * prior_sample_nll(logits, masks)

    with _extra_training_loss(term):
        yield


class AggressivePosterior:
    """Extra posterior-only steps before each early training step (``--aggressive-posterior``).

    `bind` hands it the training loop (its ``progress.step``, ``planned_steps``, ``loss_fn``,
    ``_kl_for_loss`` and ``preset``); `before_step(model, images, prompts, masks, forward)`,
    called with a training step's inputs, then takes up to ``steps`` Adam steps on the posterior
    net's weights alone while ``progress.step < share * planned_steps``, and nothing after.
    With ``check`` the objective is taken again after each inner step (one more forward): on fresh z
    draws (``"fresh-z"``) or on the draws the step was taken on (``"same-z"``, common random
    numbers, so only the step itself can raise it). A step that did not lower it is undone (the
    posterior's weights and its Adam state) and ends that training step's inner loop. Gradients
    reach no other weight: every other parameter's ``.grad`` is left as it was, and the
    posterior's is cleared.
    """

    CHECKS = ("fresh-z", "same-z")

    def __init__(self, steps: int, share: float, check: str | None = None) -> None:
        if check not in (None, *self.CHECKS):
            raise ValueError(f"check must be one of {self.CHECKS} or None, got {check!r}")
        self.steps, self.share, self.check = steps, share, check
        self.loop: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generators: dict[torch.device, torch.Generator] = {}
        self.inner_steps = 0  # kept so far, for the record
        self.undone = 0  # taken and undone by the check

    def bind(self, loop: Any) -> None:
        self.loop, self.optimizer = loop, None

    def active(self) -> bool:
        return self.loop is not None and self.loop.progress.step < self.share * self.loop.planned_steps

    def before_step(self, model: nn.Module, images: torch.Tensor, prompts: Any, masks: torch.Tensor,
                    forward) -> None:
        """``forward(model, images, prompts, masks=..., generator=...)`` is the unpatched forward."""
        if not self.active():
            return
        params = [p for p in model.latent_heads.posterior_net.parameters() if p.requires_grad]
        if self.optimizer is None:
            preset = self.loop.preset
            lr = preset.latent_lr if preset.latent_lr is not None else preset.lr
            self.optimizer = torch.optim.Adam(params, lr=lr)
        if images.device not in self.generators:
            self.generators[images.device] = torch.Generator(device=images.device).manual_seed(0)
        generator = self.generators[images.device]

        def objective(seed: int | None = None) -> torch.Tensor:
            draws = generator if seed is None else torch.Generator(device=images.device).manual_seed(seed)
            output = forward(model, images, prompts, masks=masks, generator=draws)
            return self.loop.loss_fn(output.logits.float(), masks, self.loop._kl_for_loss(output)).loss

        def new_seed() -> int | None:
            if self.check != "same-z":
                return None
            return int(torch.randint(2**62, (1,), generator=generator, device=images.device))

        seed = new_seed()
        loss = objective(seed)
        for index in range(self.steps):
            last = index == self.steps - 1
            if self.check:
                weights = [p.detach().clone() for p in params]
                state = copy.deepcopy(self.optimizer.state_dict())
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for param, grad in zip(params, grads):
                param.grad = grad
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if not self.check:
                self.inner_steps += 1
                if not last:
                    loss = objective()
                continue
            # fresh-z: the objective after the step is the next step's loss; same-z: taken on the
            # step's own draws without a graph, and the next step gets new draws
            with torch.set_grad_enabled(self.check == "fresh-z" and not last):
                after = objective(seed)
            if bool(after.detach() >= loss.detach()):  # one host sync
                with torch.no_grad():
                    for param, weight in zip(params, weights):
                        param.copy_(weight)
                self.optimizer.load_state_dict(state)
                self.undone += 1
                return
            self.inner_steps += 1
            if self.check == "fresh-z":
                loss = after
            elif not last:
                seed = new_seed()
                loss = objective(seed)


@contextlib.contextmanager
def _aggressive_posterior_patches(aggressive: AggressivePosterior) -> Iterator[None]:
    """Bind ``aggressive`` to each training loop that runs, and call its `before_step` before each
    training forward with a rater mask (validation, in eval mode, and the prior fit are left alone)."""
    from uncertainty_adapters.integrations.pipeline.training import loop as training_loop

    original_run = training_loop._TrainingLoop.run

    def run(self):
        aggressive.bind(self)
        try:
            return original_run(self)
        finally:
            aggressive.bind(None)

    with mock.patch.object(training_loop._TrainingLoop, "run", run), \
            _training_forward_hooks(before=aggressive.before_step):
        yield


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="python -m benchmarks.latent_takeoff [changes] -- DIAGNOSE_LATENT_ARGS",
    )
    parser.add_argument("--posterior-sigma", type=float, metavar="S", help="the posterior net starts at sigma S")
    parser.add_argument("--posterior-gain", type=float, metavar="G", help="the posterior's mean output starts G times larger")
    parser.add_argument("--total-free-bits", action="store_true", help="floor the total KL at C * free_bits, not each dimension")
    parser.add_argument("--all-raters", action="store_true", help="B / R images with all R raters each per step")
    parser.add_argument("--all-raters-epochs", type=int, metavar="N",
                        help="as --all-raters in the first N epochs only, then one rater per image")
    parser.add_argument("--aux-decoder", type=float, metavar="W",
                        help="add W x an auxiliary loss: redraw the rater's mask from the raters' mean mask and z")
    parser.add_argument("--aux-noise", choices=("posterior", "prior"), default="posterior",
                        help="the auxiliary net's z: the posterior's sample, or its mean plus noise at the prior's sigma")
    parser.add_argument("--prior-samples", type=int, metavar="K",
                        help="add the rater mask's likelihood under K prior samples (best-of-K, as SSN) to the loss")
    parser.add_argument("--prior-weight", type=float, default=1.0, metavar="W",
                        help="weight of the --prior-samples term (default 1)")
    parser.add_argument("--aggressive-posterior", type=int, metavar="N",
                        help="early in training, N posterior-only steps before each step (lagging inference networks)")
    parser.add_argument("--aggressive-share", type=float, default=0.25, metavar="S",
                        help="share of the planned steps that get the --aggressive-posterior steps (default 0.25)")
    parser.add_argument("--aggressive-check", choices=AggressivePosterior.CHECKS,
                        help="undo an --aggressive-posterior step that does not lower the batch's objective (taken again "
                             "on fresh z draws or on the step's own), and end that loop")
    parser.add_argument("--init-seed", type=int, metavar="N",
                        help="initial weights as --seed N draws them; split, batch order, raters and z's noise the run's own")
    parser.add_argument("--step-seed", type=int, metavar="N",
                        help="each training step's clicks and z noise as --seed N draws them; the rest the run's own")
    parser.add_argument("--prompt-form", choices=sorted(PROMPT_FORMS),
                        help="z's prompt of the mask decoder: channel gains and shifts (film), a per-position MLP (fcomb), "
                             "or the dense shift and a prompt token (token)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks import diagnose_latent

    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options = build_parser().parse_args(argv[:split])  # --help ends here
    if split == len(argv):
        build_parser().error("give diagnose_latent's arguments after --, e.g. -- --out D --data bimodal --variant demo")
    args = diagnose_latent.build_parser().parse_args(argv[split + 1:])
    if args.run or args.summarize or args.full_finetune:
        raise SystemExit("latent_takeoff trains a variant: --run, --summarize and --full-finetune are diagnose_latent's own")
    if args.model != "ua-sam":
        raise SystemExit(f"latent_takeoff changes UA-SAM's latent; --model {args.model} would train without the change")
    name = f"{args.data}-{args.variant}"
    if (Path(args.out) / "runs" / name).exists():
        raise SystemExit(
            f"{Path(args.out) / 'runs' / name} exists: it would be measured as it is, without the change; "
            f"give each what-if run a fresh --out"
        )
    if options.prior_samples is not None and options.prior_samples < 2:
        build_parser().error(f"--prior-samples must be at least 2 for the samples to compete, got {options.prior_samples}")
    if options.prior_weight != 1.0 and options.prior_samples is None:
        build_parser().error("--prior-weight weights the --prior-samples term: give --prior-samples K too")
    if options.aggressive_posterior is not None and options.aggressive_posterior < 1:
        build_parser().error(f"--aggressive-posterior must be at least 1, got {options.aggressive_posterior}")
    if not 0 < options.aggressive_share <= 1:
        build_parser().error(f"--aggressive-share must lie in (0, 1], got {options.aggressive_share}")
    if (options.aggressive_share != 0.25 or options.aggressive_check) and options.aggressive_posterior is None:
        build_parser().error("--aggressive-share and --aggressive-check shape --aggressive-posterior: give --aggressive-posterior N too")
    if options.all_raters_epochs is not None and (options.all_raters or options.all_raters_epochs < 1):
        build_parser().error("--all-raters-epochs N (N >= 1) limits --all-raters to the first N epochs: give one of them")
    if options.aux_noise != "posterior" and options.aux_decoder is None:
        build_parser().error("--aux-noise sets the --aux-decoder's z: give --aux-decoder W too")
    changes = {key: value for key, value in vars(options).items() if key not in ("aux_noise", "prior_weight", "aggressive_share", "aggressive_check")}
    if all(value is None or value is False for value in changes.values()):  # --init-seed 0 is a change
        build_parser().error("name at least one change (see --help)")
    if options.prompt_form is not None:
        from uncertainty_adapters.integrations.pipeline.presets import get_preset

        if not get_preset("demo").replace(**diagnose_latent.VARIANTS[args.variant]).latent_prompt:
            raise SystemExit(f"--prompt-form changes the latent prompt, which variant {args.variant!r} does not have")
    with what_if(options) as record:
        result = diagnose_latent.run(args)
    result["what_if"] = record
    (Path(args.out) / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
