"""The per-sample half of every adapter, for all L adapters at once.

An uncertainty adapter adds W_f f_i to every token of sample b (`UncertaintyAdapter`): a vector
that depends on p_0 and z only, never on the tokens. Computed adapter by adapter, as the paper
draws it, this is about 40 tiny operations per adapter (MLPs on (B, C) tensors, each with its
autocast casts): on a GPU each costs its kernel launch and nothing else, so at small batches
the host issuing them bounds the speed (the GPU figures: benchmarks/RESULTS.md, section 6b).

`adapter_shifts` computes the L shifts right after block 0, in one pass:

- the position chain p_i -> p'_i -> w12(p'_i) -> p_{i+1} (Eq. 1, 5), which is sequential, adapter
  by adapter (about 7 small operations each);
- everything else batched over the L adapters with their weights stacked: w21(z), w22(z), w11(p'),
  the modulation and modified sample (Eq. 2-3), and the Eq. 4 MLPs that map f_i to W_f f_i.

It runs in the adapters' parameter dtype with autocast off: the (B, L, D) result is tiny, and
full precision here costs nothing while sparing the casts. The result equals the adapter-by-
adapter computation (`UncertaintyAdapter.forward` without ``shift``) up to float rounding; a
test checks it for every interaction.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .cmsm import CMSM, ConcatInteraction, PositionInteraction, SampleInteraction, modulate


def _stack(layers: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (L, out, in) and biases (L, out) of one linear layer per adapter."""
    return torch.stack([layer.weight for layer in layers]), torch.stack([layer.bias for layer in layers])


def _linear_per_adapter(x: torch.Tensor, layers: Sequence[nn.Linear]) -> torch.Tensor:
    """x (B, L, in) -> (B, L, out): adapter i's layer applied to x[:, i]."""
    weight, bias = _stack(layers)
    return torch.einsum("bli,loi->blo", x, weight) + bias


def _shared_input_per_adapter(x: torch.Tensor, layers: Sequence[nn.Linear]) -> torch.Tensor:
    """x (B, in) -> (B, L, out): every adapter's layer applied to the same x (one matmul)."""
    weight, bias = _stack(layers)
    return (x @ weight.flatten(0, 1).T).unflatten(-1, weight.shape[:2]) + bias


def _position_chain(interactions: Sequence[nn.Module], p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p_0 (B, L) -> p' (B, L, C) and w12(p') (B, L, C), following p_i -> p_{i+1} adapter by adapter."""
    features, conditions = [], []
    for interaction in interactions:
        p_feat, condition, p = interaction.position(p)
        features.append(p_feat)
        conditions.append(condition)
    return torch.stack(features, dim=1), torch.stack(conditions, dim=1)


def _interaction_features(interactions: Sequence[nn.Module], p: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """f_i of every adapter, (B, L, F): what each interaction's forward returns, all at once."""
    kind = type(interactions[0])
    if any(type(i) is not kind for i in interactions):
        raise TypeError("adapter_shifts needs one interaction type for all adapters")
    count = len(interactions)
    if kind is SampleInteraction:
        return z[:, None].expand(-1, count, -1)
    p_feat, condition = _position_chain(interactions, p)
    if kind is PositionInteraction:
        return condition
    if kind is ConcatInteraction:
        return torch.cat([z[:, None].expand(-1, count, -1), condition], dim=-1)
    if kind is CMSM:
        query = _linear_per_adapter(p_feat, [i.w11 for i in interactions])  # (B, L, C)
        key = _shared_input_per_adapter(z, [i.w21 for i in interactions])  # (B, L, C)
        sample = _shared_input_per_adapter(z, [i.w22 for i in interactions])  # (B, L, C)
        return modulate(query, key, sample, condition, interactions[0].activation)  # Eq. 2-3
    raise TypeError(f"adapter_shifts does not know the interaction {kind.__name__}")


def adapter_shifts(
    adapters: Sequence[nn.Module], p: torch.Tensor | None, z: torch.Tensor | None, batched: bool = True
) -> torch.Tensor | None:
    """W_f f_i of every adapter: the vector adapter i adds to each token of a sample.

    Args:
        adapters: the L `UncertaintyAdapter` modules, in block order.
        p: p_0 (B, L) from `PositionCondition`, or None for interactions without a position variant.
        z: the latent samples (B, C), or None for interactions that ignore z.
        batched: True (the default) for the batched computation described above; False for the
            adapter-by-adapter one (each interaction's and MLP's own forward, under whatever
            autocast is active): the reference the batched one is tested and timed against.

    Returns:
        (B, L, D) (or (B, L, bottleneck) for ``latent_placement="bottleneck"``), or None for
        adapters without an interaction (``interaction="none"``).

    Example:
        >>> from uncertainty_adapters import UncertaintyAdapterConfig
        >>> from uncertainty_adapters.adapter import UncertaintyAdapter
        >>> config = UncertaintyAdapterConfig(latent_dim=6, latent_placement="residual")
        >>> adapters = [UncertaintyAdapter(32, config, 4, is_last=i == 3) for i in range(4)]
        >>> adapter_shifts(adapters, torch.randn(2, 4), torch.randn(2, 6)).shape  # p_0 (B, L), z (B, C)
        torch.Size([2, 4, 32])
    """
    interactions = [adapter.interaction for adapter in adapters]
    if interactions[0] is None:
        return None
    if not batched:
        shifts = []
        for adapter in adapters:
            feature, p = adapter.interaction(p, z)
            shifts.append(adapter.reconstruct(feature))
        return torch.stack(shifts, dim=1)
    dtype = adapters[0].up.weight.dtype
    device_type = adapters[0].up.weight.device.type
    with torch.autocast(device_type, enabled=False):
        p = p.to(dtype) if p is not None else None
        z = z.to(dtype) if z is not None else None
        feature = _interaction_features(interactions, p, z)
        first = _linear_per_adapter(feature, [adapter.reconstruct[0] for adapter in adapters])
        hidden = F.gelu(first)  # torchvision MLP: Linear, GELU, Dropout(0), Linear, Dropout(0)
        return _linear_per_adapter(hidden, [adapter.reconstruct[-2] for adapter in adapters])
