"""GraphedTrainStep: the whole training step (forward, ELBO, backward, optimizer step) recorded as
one CUDA graph on CUDA; on a CPU the same object runs the same step eagerly. The CUDA-graph path
itself is exercised on a GPU by benchmarks/gpu_check.sh and by the CUDA-only tests below."""

from __future__ import annotations

import copy

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline.training.graphed_step import GraphedTrainStep, capturable_adam
from uncertainty_adapters.integrations.sam import build_uncertainty_sam, sample_point_prompts

from .conftest import TINY, images


def _batch():
    x = images(2)
    masks = torch.zeros(2, 1, TINY.image_size, TINY.image_size)
    masks[:, :, 20:40, 24:44] = 1
    return x, sample_point_prompts(masks, generator=torch.Generator().manual_seed(0)), masks


def _terms(loss_fn):
    def terms(output, mask):
        elbo = loss_fn(output.logits.float(), mask, output.kl)
        return elbo.reconstruction, elbo.kl

    return terms


def _twins(**step_options):
    """A model and its copy: the copy trained by a `GraphedTrainStep` (``step_options``), the
    original by the trainer's eager step (`_eager_step`) with its own Adam."""
    torch.manual_seed(0)
    reference = build_uncertainty_sam(TINY).train()
    model = copy.deepcopy(reference)
    loss_fn = ua.ElboLoss(beta=0.5, validate=False)
    optimizer = torch.optim.Adam([p for p in reference.parameters() if p.requires_grad], lr=1e-3)
    step = GraphedTrainStep(model, capturable_adam([p for p in model.parameters() if p.requires_grad], 1e-3,
                                                   torch.device("cpu")), _terms(loss_fn), beta=0.5, **step_options)
    return reference, optimizer, loss_fn, model, step


def _eager_step(reference, optimizer, loss_fn, batch, **forward_options):
    x, prompts, masks = batch
    torch.manual_seed(7)
    out = reference(x, prompts, masks=masks, **forward_options)
    expected = loss_fn(out.logits.float(), masks, out.kl)
    expected.loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return expected


def _assert_step_gives(step, batch, expected):
    """The step's loss and KL on ``batch``, drawn from the same seed as `_eager_step`, are ``expected``'s."""
    torch.manual_seed(7)
    loss, _, kl = step(*batch)
    torch.testing.assert_close(loss, expected.loss.detach())
    torch.testing.assert_close(kl, expected.kl.detach())


def _assert_same_trainable_weights(model, reference):
    for (name, ours), theirs in zip(model.trainable_state_dict().items(), reference.trainable_state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)


def test_on_a_cpu_the_step_equals_the_trainers_eager_step():
    reference, optimizer, loss_fn, model, step = _twins()
    batch = _batch()
    _assert_step_gives(step, batch, _eager_step(reference, optimizer, loss_fn, batch))
    assert not step.graphed
    _assert_same_trainable_weights(model, reference)


def test_set_beta_changes_the_kl_weight_of_the_next_steps():
    torch.manual_seed(0)
    model = build_uncertainty_sam(TINY).train()
    step = GraphedTrainStep(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0),
                            _terms(ua.ElboLoss(validate=False)), beta=0.0)
    x, prompts, masks = _batch()
    torch.manual_seed(1)
    loss0, reconstruction0, kl0 = step(x, prompts, masks)
    step.set_beta(2.0)
    torch.manual_seed(1)
    loss2, reconstruction2, kl2 = step(x, prompts, masks)
    torch.testing.assert_close(loss0, reconstruction0)
    torch.testing.assert_close(loss2, reconstruction2 + 2.0 * kl2)


def test_capturable_adam_keeps_parameter_groups_and_their_learning_rates():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = capturable_adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 1e-4}], 1e-3, torch.device("cpu"))
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph path needs CUDA")
def test_on_cuda_a_float_learning_rate_is_refused_with_the_fix():
    model = torch.nn.Linear(2, 2).cuda()
    with pytest.raises(ValueError, match="capturable"):
        GraphedTrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), lambda out, mask: (out, out))


def test_under_free_bits_the_step_penalises_the_floored_kl_and_reports_the_mean_kl():
    torch.manual_seed(0)
    model = build_uncertainty_sam(TINY).train()
    loss_fn = ua.ElboLoss(validate=False, free_bits=5.0)  # above any KL here: every dimension is floored

    def terms(output, mask):
        elbo = loss_fn(output.logits.float(), mask, output.kl_per_dim)
        return elbo.reconstruction, loss_fn.kl_terms(output.kl_per_dim)[0], elbo.kl

    step = GraphedTrainStep(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0),
                            terms, beta=1.0)
    loss, reconstruction, kl = step(*_batch())
    torch.testing.assert_close(loss, reconstruction + 5.0 * model.config.latent_dim)
    assert kl < 5.0


def test_a_posterior_noise_share_set_on_the_step_reaches_the_model_as_the_eager_float_does():
    reference, optimizer, loss_fn, model, step = _twins(posterior_noise=True)
    batch = _batch()
    for share in (0.0, 0.5, 1.0):  # a warm-up's ramp: the step's tensor against the trainer's float
        expected = _eager_step(reference, optimizer, loss_fn, batch, posterior_noise=share)
        step.set_posterior_noise(share)
        _assert_step_gives(step, batch, expected)
    _assert_same_trainable_weights(model, reference)


def test_a_posterior_noise_share_needs_the_option_and_lies_in_0_1():
    torch.manual_seed(0)
    model = build_uncertainty_sam(TINY).train()
    params = [p for p in model.parameters() if p.requires_grad]
    terms = _terms(ua.ElboLoss(validate=False))
    with pytest.raises(ValueError, match=r"built without posterior_noise=True.*GraphedTrainStep\(\.\.\., posterior_noise=True\)"):
        GraphedTrainStep(model, torch.optim.SGD(params, lr=0.0), terms).set_posterior_noise(0.5)
    step = GraphedTrainStep(model, torch.optim.SGD(params, lr=0.0), terms, posterior_noise=True)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got 1.5"):
        step.set_posterior_noise(1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph path needs CUDA")
def test_on_cuda_the_recorded_step_follows_the_posterior_noise_share_between_replays():
    torch.manual_seed(0)
    model = build_uncertainty_sam(TINY).cuda().train()
    loss_fn = ua.ElboLoss(beta=0.5, validate=False)
    x, prompts, masks = _batch()
    x, prompts, masks = x.cuda(), prompts.to("cuda"), masks.cuda()
    optimizer = capturable_adam([p for p in model.parameters() if p.requires_grad], 0.0, torch.device("cuda"))
    step = GraphedTrainStep(model, optimizer, _terms(loss_fn), beta=0.5, posterior_noise=True)
    step.set_posterior_noise(0.0)  # z = the posterior's mean: no draw, so the replay must equal the eager step
    recorded = step(x, prompts, masks)[0]
    assert step.graphed and len(step.graphs) == 1
    with torch.no_grad():
        out = model(x, prompts, masks=masks, posterior_noise=0.0)
        eager = loss_fn(out.logits.float(), masks, out.kl).loss
    torch.testing.assert_close(recorded, eager)
    step.set_posterior_noise(1.0)
    noisy = step(x, prompts, masks)[0]
    step.set_posterior_noise(0.0)
    torch.testing.assert_close(step(x, prompts, masks)[0], eager)
    assert not torch.equal(noisy, eager) and len(step.graphs) == 1  # the same graph, another share
