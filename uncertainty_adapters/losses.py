"""The training objective of UA-SAM: the evidence lower bound of paper Eq. 6.

``L = L_rec(logits, target) + beta * KL(posterior || prior)``, where the reconstruction term is
MONAI's ``DiceCELoss`` on sigmoid logits (Dice + binary cross-entropy) and the KL divergence comes
from the prior/posterior latent heads, one value per image.

Optionally with free bits (Kingma et al. 2016): given the KL per latent dimension (B, C), the
penalised term is sum_d max(lambda, mean_b KL_bd), so the loss stops pushing a dimension onto
the prior once it carries less than lambda nats.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["ElboTerms", "ElboLoss", "elbo_loss"]


class ElboTerms(NamedTuple):
    """The ELBO loss and its two parts, all scalars.

    Attributes:
        loss: ``reconstruction + beta * kl``; call ``.backward()`` on this one.
        reconstruction: the DiceCE reconstruction term.
        kl: the KL divergence, averaged over the batch (not multiplied by beta, not floored by
            free bits).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class ElboLoss(nn.Module):
    """Paper Eq. 6: DiceCE reconstruction of the target plus ``beta`` times the mean KL.

    Args:
        beta: weight of the KL term (paper default 1.0).
        lambda_dice: weight of the Dice part of ``DiceCELoss``.
        lambda_ce: weight of the binary cross-entropy part of ``DiceCELoss``.
        validate: check that the target is binary on every call; this reads a value back from
            the device (a host-device sync), so training loops may turn it off once the data
            pipeline is trusted. Shape checks always run and cost nothing.
        free_bits: lambda, nats per latent dimension below which the KL is not penalised (0:
            the plain ELBO). When > 0, ``kl`` must be given per dimension, (B, C).

    Example:
        >>> criterion = ElboLoss(beta=1.0)
        >>> logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        >>> target = (torch.rand(2, 1, 8, 8) > 0.5).float()
        >>> terms = criterion(logits, target, kl=torch.tensor([0.3, 0.1]))
        >>> terms.loss.backward()
    """

    def __init__(
        self,
        beta: float = 1.0,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        validate: bool = True,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not free_bits >= 0:
            raise ValueError(f"free_bits must be >= 0 nats per latent dimension, got {free_bits}")
        self.beta = beta
        self.free_bits = float(free_bits)
        self.validate = validate
        from monai.losses import DiceCELoss  # imported where used: MONAI is slow to import

        self.dice_ce = DiceCELoss(sigmoid=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, kl: torch.Tensor) -> ElboTerms:
        """Compute the ELBO loss.

        Args:
            logits: predicted mask logits (B, 1, H, W), before the sigmoid.
            target: binary ground-truth mask (B, 1, H, W), bool or 0/1 numbers.
            kl: KL(posterior || prior) per image (B,), per image and latent dimension (B, C)
                (required when ``free_bits`` > 0), or an already reduced scalar.

        Returns:
            ``ElboTerms(loss, reconstruction, kl)``, each a scalar tensor.
        """
        self._check(logits, target, kl)
        if not target.is_floating_point():
            target = target.to(logits.dtype)
        reconstruction = self.dice_ce(logits, target)
        penalised, kl = self.kl_terms(kl)
        return ElboTerms(reconstruction + self.beta * penalised, reconstruction, kl)

    def kl_terms(self, kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the KL term beta multiplies, the batch-mean KL), both scalars, from ``kl`` of shape
        (B,), (B, C) or (); they differ only under free bits, where the first is
        sum_d max(free_bits, mean_b KL_bd)."""
        if kl.dim() == 2:
            per_dim = kl.mean(0)  # (C,)
            penalised = per_dim.clamp_min(self.free_bits).sum() if self.free_bits > 0 else per_dim.sum()
            return penalised, per_dim.sum()
        kl = kl.mean()
        return kl, kl

    def _check(self, logits: torch.Tensor, target: torch.Tensor, kl: torch.Tensor) -> None:
        if logits.dim() != 4 or logits.shape[1] != 1:
            raise ValueError(
                f"logits must have shape (B, 1, H, W), got {tuple(logits.shape)}; add the "
                "channel dim with logits.unsqueeze(1)"
            )
        if target.shape != logits.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} must match logits shape "
                f"{tuple(logits.shape)}; both are (B, 1, H, W)"
            )
        if not logits.is_floating_point():
            raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
        if kl.dim() > 2 or (kl.dim() >= 1 and kl.shape[0] != logits.shape[0]):
            raise ValueError(
                f"kl must have shape (B,) = ({logits.shape[0]},), (B, C) per latent dimension, or be "
                f"a scalar, got {tuple(kl.shape)} (logits {tuple(logits.shape)})"
            )
        if self.free_bits > 0 and kl.dim() != 2:
            raise ValueError(
                f"free_bits={self.free_bits} needs the KL per latent dimension, (B, C), got shape "
                f"{tuple(kl.shape)}; pass posterior.kl_per_dim(prior)"
            )
        if (
            self.validate
            and target.dtype != torch.bool
            and not bool(((target == 0) | (target == 1)).all())
        ):
            raise ValueError(
                f"target must be binary (bool or 0/1), got other values in a {target.dtype} "
                "tensor; threshold soft labels first, e.g. target > 0.5"
            )


def elbo_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kl: torch.Tensor,
    beta: float = 1.0,
    validate: bool = True,
) -> ElboTerms:
    """Functional form of ``ElboLoss`` (paper Eq. 6), with the default DiceCE weights.

    Args:
        logits: predicted mask logits (B, 1, H, W), before the sigmoid.
        target: binary ground-truth mask (B, 1, H, W).
        kl: KL(posterior || prior) per image (B,), or a scalar.
        beta: weight of the KL term.
        validate: check that the target is binary (a host-device sync; see ``ElboLoss``).

    Returns:
        ``ElboTerms(loss, reconstruction, kl)``, each a scalar tensor.

    Example:
        >>> logits = torch.zeros(1, 1, 4, 4)
        >>> terms = elbo_loss(logits, torch.ones(1, 1, 4, 4), kl=torch.tensor([0.5]), beta=0.1)
        >>> terms.kl
        tensor(0.5000)
    """
    return ElboLoss(beta=float(beta), validate=validate)(logits, target, kl)
