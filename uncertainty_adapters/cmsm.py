"""How the latent sample z meets the adapter: CMSM (paper Eq. 1-3, 5) and its Table 2 ablations.

Every interaction maps the position variant p_i (B, L) and the latent sample z (B, C) of each
sample to an uncertainty feature f (B, F) and the next position variant p_{i+1} (B, L). All
operations are per sample (batched matrix products over the sample axis, never across it), so
an image's result does not depend on what else is in the batch.

The variants, selected by ``UncertaintyAdapterConfig.interaction``:

- ``cmsm``: the condition p modifies the sample z (the method, Eq. 1-3, 5), with the paper's
  ReLU modulation or the official code's softmax one (``cmsm_activation``).
- ``concat``: "WMS", z concatenated with the position feature, no modification.
- ``sample``: z only, no position variant.
- ``position``: the position variant only, z is never read.
- ``none``: no interaction at all (plain adapters); `build_interaction` returns None.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """torchvision's two-layer ``MLP`` (Linear, GELU, Dropout(0), Linear, Dropout(0)): in_dim ->
    hidden_dim -> out_dim. torchvision is imported here, where the layer is built, so that
    importing the package does not pay for it."""
    from torchvision.ops import MLP

    return MLP(in_dim, [hidden_dim, out_dim], activation_layer=nn.GELU)


class PositionFeature(nn.Module):
    """p_i -> p'_i = MLP(p_i) (Eq. 1), its projection w12(p'_i), and p_{i+1} (Eq. 5).

    Args:
        num_adapters: L, the length of the position variant.
        latent_dim: C, the width of p'.
        hidden_dim: hidden width of the two MLPs.
        emits_next: whether this adapter passes p_{i+1} on (False for the last adapter, whose
            Eq. 5 output would be unused; leaving it out keeps DDP free of unused parameters).
    """

    def __init__(self, num_adapters: int, latent_dim: int, hidden_dim: int, emits_next: bool) -> None:
        super().__init__()
        self.position_mlp = mlp(num_adapters, hidden_dim, latent_dim)
        self.w12 = nn.Linear(latent_dim, latent_dim)
        self.next_position = mlp(latent_dim, hidden_dim, num_adapters) if emits_next else None

    def forward(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """p (B, L) -> (p' (B, C), w12(p') (B, C), p_{i+1} (B, L) or None)."""
        p_feat = self.position_mlp(p)
        condition = self.w12(p_feat)
        p_next = self.next_position(condition) if self.next_position is not None else None
        return p_feat, condition, p_next


def modulate(query: torch.Tensor, key: torch.Tensor, sample: torch.Tensor, condition: torch.Tensor,
             activation: str) -> torch.Tensor:
    """CMSM's Eq. 2-3 on any leading axes: query, key, sample, condition (..., C) -> f (..., C).

    "relu" (paper): A = ReLU(query key^T), f = ReLU(sample A) * condition. A is rank 1 and f
    is exactly zero (no gradient to z) whenever the signs of the per-sample scalars say so.
    "softmax" (official code): A = softmax(query key^T / sqrt(C)) along each row, f = (sample A)
    * condition. Every row of A sums to 1, so f is zero only where the condition is.
    """
    scores = query.unsqueeze(-1) * key.unsqueeze(-2)  # (..., C, C): per-sample outer product
    if activation == "relu":
        return F.relu(torch.matmul(sample.unsqueeze(-2), F.relu(scores)).squeeze(-2)) * condition
    if activation == "softmax":
        weights = torch.softmax(scores / math.sqrt(query.shape[-1]), dim=-1)
        return torch.matmul(sample.unsqueeze(-2), weights).squeeze(-2) * condition
    raise ValueError(f"unknown cmsm_activation {activation!r}; use 'relu' or 'softmax'")


class CMSM(nn.Module):
    """Condition Modifies Sample Module (Eq. 1-3, 5), one sample at a time.

    With p' = MLP(p_i), q = w11(p'), k = w21(z), v = w22(z), p_{i+1} = MLP(w12(p')):
    - activation "relu" (paper): A = ReLU(q k^T) in R^{C x C}, f = ReLU(v A) * w12(p');
    - activation "softmax" (official code): A = softmax(q k^T / sqrt(C)) along rows,
      f = (v A) * w12(p').
    See `modulate`.

    Args:
        num_adapters: L, the length of the position variant (the number of adapters).
        latent_dim: C, the width of z and of the modified sample.
        hidden_dim: hidden width of the MLPs of Eq. 1 and 5.
        emits_next: whether to compute p_{i+1} (False for the last adapter).
        activation: "relu" or "softmax" (``UncertaintyAdapterConfig.cmsm_activation``).

    Example:
        >>> cmsm = CMSM(num_adapters=12, latent_dim=6, hidden_dim=64, emits_next=True)
        >>> f, p_next = cmsm(torch.randn(2, 12), torch.randn(2, 6))  # p_i (B, L), z (B, C)
        >>> f.shape, p_next.shape  # f (B, C), p_{i+1} (B, L)
        (torch.Size([2, 6]), torch.Size([2, 12]))
    """

    def __init__(
        self, num_adapters: int, latent_dim: int, hidden_dim: int, emits_next: bool, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ("relu", "softmax"):
            raise ValueError(f"unknown cmsm_activation {activation!r}; use 'relu' or 'softmax'")
        self.activation = activation
        self.position = PositionFeature(num_adapters, latent_dim, hidden_dim, emits_next)
        self.w11 = nn.Linear(latent_dim, latent_dim)
        self.w21 = nn.Linear(latent_dim, latent_dim)
        self.w22 = nn.Linear(latent_dim, latent_dim)
        self.out_dim = latent_dim

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """p (B, L), z (B, C) -> f (B, C), p_{i+1} (B, L) or None."""
        p_feat, condition, p_next = self.position(p)
        return modulate(self.w11(p_feat), self.w21(z), self.w22(z), condition, self.activation), p_next


class ConcatInteraction(nn.Module):
    """WMS (Table 2): z concatenated with the position feature w12(p'), z left unmodified."""

    def __init__(self, num_adapters: int, latent_dim: int, hidden_dim: int, emits_next: bool) -> None:
        super().__init__()
        self.position = PositionFeature(num_adapters, latent_dim, hidden_dim, emits_next)
        self.out_dim = 2 * latent_dim

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """p (B, L), z (B, C) -> f = [z, w12(p')] (B, 2C), p_{i+1} (B, L) or None."""
        _, condition, p_next = self.position(p)
        return torch.cat([z, condition], dim=-1), p_next


class SampleInteraction(nn.Module):
    """z only (Table 2, first row): f = z, no position variant is read or produced."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.out_dim = latent_dim

    def forward(self, p: torch.Tensor | None, z: torch.Tensor) -> tuple[torch.Tensor, None]:
        """z (B, C) -> f = z (B, C), None. ``p`` is ignored."""
        return z, None


class PositionInteraction(nn.Module):
    """Position variant only (Table 2, second row): f = w12(p'), z is never read."""

    def __init__(self, num_adapters: int, latent_dim: int, hidden_dim: int, emits_next: bool) -> None:
        super().__init__()
        self.position = PositionFeature(num_adapters, latent_dim, hidden_dim, emits_next)
        self.out_dim = latent_dim

    def forward(self, p: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """p (B, L) -> f = w12(p') (B, C), p_{i+1} (B, L) or None. ``z`` is ignored."""
        _, condition, p_next = self.position(p)
        return condition, p_next


def build_interaction(
    interaction: str, num_adapters: int, latent_dim: int, hidden_dim: int, emits_next: bool,
    cmsm_activation: str = "relu",
) -> nn.Module | None:
    """The interaction module for one adapter, or None for ``interaction="none"``."""
    if interaction == "cmsm":
        return CMSM(num_adapters, latent_dim, hidden_dim, emits_next, cmsm_activation)
    if interaction == "concat":
        return ConcatInteraction(num_adapters, latent_dim, hidden_dim, emits_next)
    if interaction == "sample":
        return SampleInteraction(latent_dim)
    if interaction == "position":
        return PositionInteraction(num_adapters, latent_dim, hidden_dim, emits_next)
    if interaction == "none":
        return None
    raise ValueError(f"unknown interaction {interaction!r}")
