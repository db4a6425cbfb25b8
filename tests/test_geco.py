"""GecoBeta: GECO's KL weight, 1 / lambda, moved by the reconstruction's distance to kappa."""

from __future__ import annotations

import math

import pytest
import torch

import uncertainty_adapters as ua


def test_the_kl_weight_falls_while_the_reconstruction_is_above_kappa_and_rises_once_below():
    geco = ua.GecoBeta(kappa=0.1, beta=1e-3, decay=0.0, rate=1.0)
    geco.update(torch.tensor(0.3))  # constraint +0.2: log lambda += 0.2
    assert geco.beta.item() == pytest.approx(1e-3 * math.exp(-0.2), rel=1e-5)
    geco.update(torch.tensor(0.0))  # constraint -0.1: log lambda -= 0.1
    assert geco.beta.item() == pytest.approx(1e-3 * math.exp(-0.1), rel=1e-5)


def test_the_constraint_is_a_moving_average_that_starts_at_the_first_value():
    geco = ua.GecoBeta(kappa=0.1, beta=1e-3, decay=0.9, rate=1.0)
    geco.update(torch.tensor(0.3))
    assert geco.constraint.item() == pytest.approx(0.2)
    geco.update(torch.tensor(0.1))  # 0.9 * 0.2 + 0.1 * 0
    assert geco.constraint.item() == pytest.approx(0.18)
    assert geco.beta.item() == pytest.approx(1e-3 * math.exp(-0.38), rel=1e-5)
    assert geco.steps.item() == 2


def test_beta_stays_within_its_range():
    geco = ua.GecoBeta(kappa=0.1, beta=1e-3, beta_range=(1e-4, 1e-2), decay=0.0, rate=10.0)
    for _ in range(5):
        geco.update(torch.tensor(5.0))
    assert geco.beta.item() == pytest.approx(1e-4, rel=1e-5)
    for _ in range(5):
        geco.update(torch.tensor(-5.0))
    assert geco.beta.item() == pytest.approx(1e-2, rel=1e-5)


def test_its_state_round_trips_through_state_dict_for_an_exact_resume():
    geco = ua.GecoBeta(kappa=0.05)
    for value in (0.4, 0.2, 0.01):
        geco.update(torch.tensor(value))
    restored = ua.GecoBeta(kappa=0.05)
    restored.load_state_dict(geco.state_dict())
    for module in (geco, restored):
        module.update(torch.tensor(0.07))
    assert torch.equal(geco.beta, restored.beta) and torch.equal(geco.constraint, restored.constraint)


def test_beta_weights_the_elbo_loss_as_a_tensor():
    geco = ua.GecoBeta(kappa=0.1, beta=0.5)
    loss = ua.ElboLoss(beta=geco.beta)
    logits, target = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    terms = loss(logits, target, kl=torch.tensor([2.0, 4.0]))
    assert terms.loss.item() == pytest.approx(terms.reconstruction.item() + 0.5 * 3.0, rel=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kappa=0.0), "kappa is a reconstruction loss to reach and must be > 0, got 0.0"),
    (dict(kappa=0.1, beta=2.0), r"starting beta 2.0 must lie within beta_range \(1e-06, 1.0\)"),
    (dict(kappa=0.1, beta_range=(0.0, 1.0)), r"0 < min <= max, got \(0.0, 1.0\)"),
    (dict(kappa=0.1, decay=1.0), r"decay must be in \[0, 1\), got 1.0"),
    (dict(kappa=0.1, rate=0.0), "rate must be > 0, got 0.0"),
])
def test_bad_settings_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ua.GecoBeta(**kwargs)
