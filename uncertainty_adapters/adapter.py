"""The uncertainty-aware adapter behind each transformer block, and its two companions.

- `UncertaintyAdapter`: bottleneck adapter that also sees the uncertainty feature f_i = MLP(f)
  (Eq. 4) of its interaction (`cmsm.py`): out = x + W_up [act(W_down x), f_i] (paper,
  ``latent_placement="residual"``) or out = x + W_up act(W_down x + W_f f_i) ("bottleneck").
- `PositionCondition`: p_0 from the first block's output, per sample (the start of the
  position-variant chain).
- `LatentReconstruction`: Recon(z), added to the last block's output (paper section 2).

All three work on channels-last token tensors of any layout, (B, H, W, D) or (B, N, D): the
linear maps act on the last axis and per-sample features broadcast over the others. The last
layer of the up-projection and of Recon starts at zero, so an injected model computes exactly
what the frozen model computed until it is trained. With the "residual" placement the last layer
of the f_i path starts at zero too; with "bottleneck" it keeps its random start (the zero W_up
already gives the identity), so z reaches the tokens as soon as W_up moves.
"""

from __future__ import annotations

import torch
from torch import nn

from .cmsm import build_interaction, mlp
from .config import UncertaintyAdapterConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _zero_(linear: nn.Linear) -> None:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)


def _broadcast_over_tokens(feature: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """View a per-sample feature (B, D) as (B, 1, ..., 1, D) to broadcast over ``tokens``."""
    return feature.view(feature.shape[0], *([1] * (tokens.dim() - 2)), feature.shape[-1])


class UncertaintyAdapter(nn.Module):
    """One uncertainty-aware adapter (paper Fig. 1), inserted behind transformer block i.

    "residual" placement (paper): out = x + W_up [act(W_down x), f_i],  f_i = MLP(f) (Eq. 4).
    W_up [h, f_i] = W_h h + W_f f_i, and f_i is the same at every token, so the f_i term is
    computed once per sample and broadcast rather than tiling f_i over the token grid. W_f is
    also merged with the last linear layer of Eq. 4's MLP (a product of two linear maps is one
    linear map of the same rank bound), so ``reconstruct`` maps f straight to W_f f_i: the
    same functions as the paper's concatenation with 1.3M fewer parameters on SAM ViT-B.
    Its effect is one vector added to every token of the sample.

    "bottleneck" placement: out = x + W_up act(W_down x + W_f f_i), ``reconstruct`` mapping f
    to the bottleneck width. Through the activation, z changes each token's update differently.

    Args:
        embed_dim: D, the width of the block's output tokens.
        config: the adapter configuration (bottleneck ratio, interaction, latent dim, ...).
        num_adapters: L, the number of adapters (length of the position variant).
        is_last: whether this is the last adapter (it emits no p_{i+1}).

    Example:
        >>> adapter = UncertaintyAdapter(32, UncertaintyAdapterConfig(latent_dim=6), num_adapters=4, is_last=False)
        >>> x, p, z = torch.randn(2, 17, 32), torch.randn(2, 4), torch.randn(2, 6)  # (B, N, D), (B, L), (B, C)
        >>> out, p_next = adapter(x, p, z)
        >>> out.shape, p_next.shape, torch.equal(out, x)  # the identity until trained
        (torch.Size([2, 17, 32]), torch.Size([2, 4]), True)
    """

    def __init__(
        self, embed_dim: int, config: UncertaintyAdapterConfig, num_adapters: int, is_last: bool
    ) -> None:
        super().__init__()
        bottleneck = config.bottleneck_dim(embed_dim)
        self.down = nn.Linear(embed_dim, bottleneck)
        self.act = _ACTIVATIONS[config.activation]()
        self.up = nn.Linear(bottleneck, embed_dim)
        _zero_(self.up)
        self.placement = config.latent_placement
        self.interaction = build_interaction(
            config.interaction, num_adapters, config.latent_dim, config.mlp_hidden_dim, not is_last,
            config.cmsm_activation,
        )
        if self.interaction is not None:
            width = embed_dim if self.placement == "residual" else bottleneck
            self.reconstruct = mlp(self.interaction.out_dim, config.mlp_hidden_dim, width)
            if self.placement == "residual":
                _zero_(self.reconstruct[-2])
        else:
            self.reconstruct = None

    def forward(
        self, x: torch.Tensor, p: torch.Tensor | None, z: torch.Tensor | None, shift: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply the adapter.

        Args:
            x: block output tokens (B, ..., D), e.g. (B, H, W, D) or (B, N, D).
            p: position variant p_i (B, L), or None for interactions without one.
            z: latent sample (B, C), or None for interactions that ignore it.
            shift: W_f f_i (B, D), or (B, bottleneck) for the "bottleneck" placement, computed
                beforehand for all adapters at once (`uncertainty_adapters.shifts.adapter_shifts`,
                as `UncertaintyModel` does); when given, ``p`` and ``z`` are not read and
                p_{i+1} is not computed.

        Returns:
            The adapted tokens (same shape as ``x``) and p_{i+1} (B, L) or None.
        """
        p_next = None
        if shift is None and self.interaction is not None:
            feature, p_next = self.interaction(p, z)
            shift = self.reconstruct(feature)
        hidden = self.down(x)
        if shift is not None and self.placement == "bottleneck":
            hidden = hidden + _broadcast_over_tokens(shift.to(hidden.dtype), hidden)
        out = x + self.up(self.act(hidden))
        if shift is not None and self.placement == "residual":
            out = out + _broadcast_over_tokens(shift, out)
        return out, p_next


class PositionCondition(nn.Module):
    """p_0 = Linear(LayerNorm(mean over tokens of the first block's output)), per sample.

    Args:
        embed_dim: D, the width of the first block's output tokens.
        num_adapters: L, the length of the position variant.

    Example:
        >>> condition = PositionCondition(embed_dim=32, num_adapters=4)
        >>> condition(torch.randn(2, 17, 32)).shape  # tokens (B, N, D) or (B, H, W, D) -> p_0 (B, L)
        torch.Size([2, 4])
    """

    def __init__(self, embed_dim: int, num_adapters: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = nn.Linear(embed_dim, num_adapters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ..., D) -> p_0 (B, L)."""
        pooled = x.flatten(1, -2).mean(dim=1)
        return self.proj(self.norm(pooled))


class LatentReconstruction(nn.Module):
    """Recon(z): the latent sample mapped to the embedding width, added after the last block.

    Args:
        latent_dim: C, the width of z.
        hidden_dim: hidden width of the MLP.
        embed_dim: D, the width of the last block's output tokens (the MLP's last layer starts
            at zero).

    Example:
        >>> recon = LatentReconstruction(latent_dim=6, hidden_dim=64, embed_dim=32)
        >>> x = torch.randn(2, 8, 8, 32)  # tokens (B, H, W, D)
        >>> recon(x, torch.randn(2, 6)).shape, torch.equal(recon(x, torch.randn(2, 6)), x)  # identity until trained
        (torch.Size([2, 8, 8, 32]), True)
    """

    def __init__(self, latent_dim: int, hidden_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.mlp = mlp(latent_dim, hidden_dim, embed_dim)
        _zero_(self.mlp[-2])

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (B, ..., D), z (B, C) -> x + Recon(z) broadcast over the tokens."""
        return x + _broadcast_over_tokens(self.mlp(z), x)
