"""Specification of the ELBO loss of paper Eq. 6: DiceCE reconstruction + beta * mean KL."""

import pytest
import torch
from monai.losses import DiceCELoss

from uncertainty_adapters.losses import ElboLoss, ElboTerms, elbo_loss


def _batch(seed=0):
    torch.manual_seed(seed)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    kl = torch.tensor([0.4, 0.2])
    return logits, target, kl


def test_loss_equals_monai_dice_ce_plus_beta_times_mean_kl():
    logits, target, kl = _batch()
    terms = ElboLoss(beta=0.5)(logits, target, kl)
    expected = DiceCELoss(sigmoid=True)(logits, target) + 0.5 * kl.mean()
    torch.testing.assert_close(terms.loss, expected)


def test_terms_report_reconstruction_and_mean_kl_separately():
    logits, target, kl = _batch()
    terms = ElboLoss(beta=2.0)(logits, target, kl)
    assert isinstance(terms, ElboTerms)
    torch.testing.assert_close(terms.reconstruction, DiceCELoss(sigmoid=True)(logits, target))
    torch.testing.assert_close(terms.kl, torch.tensor(0.3))
    torch.testing.assert_close(terms.loss, terms.reconstruction + 2.0 * terms.kl)


def test_all_terms_are_scalars():
    terms = ElboLoss()(*_batch())
    assert all(t.dim() == 0 for t in terms)


def test_scalar_kl_is_accepted():
    logits, target, _ = _batch()
    terms = ElboLoss()(logits, target, torch.tensor(0.7))
    torch.testing.assert_close(terms.kl, torch.tensor(0.7))


def test_gradient_flows_to_logits():
    logits, target, kl = _batch()
    ElboLoss()(logits, target, kl).loss.backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum() > 0


def test_gradient_flows_to_kl():
    logits, target, _ = _batch()
    kl = torch.tensor([0.4, 0.2], requires_grad=True)
    ElboLoss(beta=3.0)(logits, target, kl).loss.backward()
    torch.testing.assert_close(kl.grad, torch.tensor([1.5, 1.5]))


def test_bool_target_gives_the_same_loss_as_float_target():
    logits, target, kl = _batch()
    criterion = ElboLoss()
    expected = criterion(logits, target, kl).loss
    torch.testing.assert_close(criterion(logits, target.bool(), kl).loss, expected)


def test_functional_form_equals_the_module():
    logits, target, kl = _batch()
    torch.testing.assert_close(
        elbo_loss(logits, target, kl, beta=0.1).loss, ElboLoss(beta=0.1)(logits, target, kl).loss
    )


def test_shape_mismatch_raises_naming_both_shapes():
    logits, _, kl = _batch()
    message = r"target shape \(2, 1, 4, 4\).*logits shape \(2, 1, 8, 8\)"
    with pytest.raises(ValueError, match=message):
        ElboLoss()(logits, torch.ones(2, 1, 4, 4), kl)


def test_logits_without_channel_dim_raise():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got \(2, 8, 8\)"):
        ElboLoss()(torch.randn(2, 8, 8), torch.ones(2, 8, 8), torch.zeros(2))


def test_kl_with_wrong_batch_size_raises():
    logits, target, _ = _batch()
    with pytest.raises(ValueError, match=r"kl must have shape \(B,\) = \(2,\)"):
        ElboLoss()(logits, target, torch.zeros(3))


def test_non_binary_target_raises_when_validating():
    logits, _, kl = _batch()
    with pytest.raises(ValueError, match="target must be binary"):
        ElboLoss()(logits, torch.full((2, 1, 8, 8), 0.5), kl)


def test_validation_of_target_values_can_be_turned_off():
    logits, _, kl = _batch()
    terms = ElboLoss(validate=False)(logits, torch.full((2, 1, 8, 8), 0.5), kl)
    assert torch.isfinite(terms.loss)


def test_negative_beta_raises():
    with pytest.raises(ValueError, match="beta must be >= 0"):
        ElboLoss(beta=-1.0)
