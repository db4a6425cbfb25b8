"""GECO: the ELBO's KL weight adapted during training so that the reconstruction meets a target.

GECO (Rezende & Viola 2018, "Taming VAEs"; the hierarchical Probabilistic U-Net trains with it)
minimises the KL subject to a constraint on the reconstruction loss, E[rec] <= kappa, through
the Lagrangian ``KL + lambda * (rec - kappa)``. Divided by lambda this is the ELBO loss of
`uncertainty_adapters.ElboLoss` with ``beta = 1 / lambda``, so `GecoBeta` only supplies beta:

    C_t = decay * C_{t-1} + (1 - decay) * (rec_t - kappa)        (C_1 = rec_1 - kappa)
    log lambda_t = clip(log lambda_{t-1} + rate * C_t, log(1 / beta_max), log(1 / beta_min))

after each optimizer step t. While the reconstruction is above kappa the KL's weight falls (the
latent may carry whatever lowers it), once it is below the weight rises until the two balance.
Dividing by lambda, rather than multiplying the reconstruction by it, keeps the reconstruction's
gradient at its usual scale.

Everything is a device tensor (``beta`` too), so an update needs no host-device sync; the state
is three buffers, saved and restored with ``state_dict`` for an exact resume. With several
processes, pass the reconstruction averaged over them, so that every process keeps the same beta.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GecoBeta(nn.Module):
    """The KL weight beta = 1 / lambda of GECO's Lagrangian, updated from the reconstruction loss.

    Args:
        kappa: the reconstruction target, in the reconstruction loss's own units (for
            `ElboLoss`, its DiceCE); > 0.
        beta: the starting KL weight, 1 / lambda_0.
        decay: of the constraint's moving average, in [0, 1).
        rate: how far log lambda moves per step per unit of the averaged constraint; > 0.
        beta_range: (min, max) of beta.

    Example:
        >>> geco = GecoBeta(kappa=0.1, beta=1e-3)
        >>> geco.update(torch.tensor(0.3))  # reconstruction above kappa: the KL's weight falls
        >>> bool(geco.beta < 1e-3)
        True
    """

    def __init__(
        self,
        kappa: float,
        beta: float = 1e-3,
        decay: float = 0.99,
        rate: float = 1.0,
        beta_range: tuple[float, float] = (1e-6, 1.0),
    ) -> None:
        super().__init__()
        low, high = beta_range
        if not kappa > 0:
            raise ValueError(f"GECO's kappa is a reconstruction loss to reach and must be > 0, got {kappa}")
        if not 0 < low <= high:
            raise ValueError(f"beta_range must be (min, max) with 0 < min <= max, got {beta_range}")
        if not low <= beta <= high:
            raise ValueError(f"the starting beta {beta} must lie within beta_range {beta_range}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.kappa, self.decay, self.rate = float(kappa), float(decay), float(rate)
        self.log_lambda_range = (-math.log(high), -math.log(low))
        self.register_buffer("log_lambda", torch.tensor(-math.log(beta)))
        self.register_buffer("constraint", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    @property
    def beta(self) -> torch.Tensor:
        """The KL weight now, 1 / lambda: a 0-dim tensor on the buffers' device."""
        return torch.exp(-self.log_lambda)

    @torch.no_grad()
    def update(self, reconstruction: torch.Tensor) -> None:
        """One step of the multiplier from this step's reconstruction loss (a scalar tensor)."""
        value = reconstruction.detach().to(self.constraint.dtype).reshape(()) - self.kappa
        first = self.steps == 0
        self.constraint.copy_(torch.where(first, value, self.decay * self.constraint + (1 - self.decay) * value))
        self.log_lambda.add_(self.rate * self.constraint).clamp_(*self.log_lambda_range)
        self.steps.add_(1)

    def extra_repr(self) -> str:
        low, high = (math.exp(-bound) for bound in reversed(self.log_lambda_range))
        return f"kappa={self.kappa}, decay={self.decay}, rate={self.rate}, beta_range=({low:g}, {high:g})"
