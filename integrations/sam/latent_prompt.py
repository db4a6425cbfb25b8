"""z as a dense prompt: each latent sample shifts the image embedding that SAM's mask decoder reads.

SAM's mask decoder adds a dense prompt embedding to the image embedding at every position (for
a point or box prompt, the learned "no mask" vector). `LatentDensePrompt` maps a latent sample z
to one more such vector, so z reaches the frozen decoder the way SAM's own dense prompts do,
instead of only through the adapters and the frozen encoder blocks after them:

    embedding'(z) = embedding + MLP(z)[:, :, None, None]

How the MLP's last layer starts (``start``):

- ``"zero"``: an untrained `LatentDensePrompt` changes nothing. The last layer's own gradient is
  not zero from the first step (the decoder's gradient times the hidden features of z), but
  through a zero layer the reconstruction's gradient reaches neither the first layer nor z, so
  the posterior gets no signal from this path until the last layer has grown.
- ``"random"``: PyTorch's default initialisation of that layer (``nn.Linear``'s). Each sample
  shifts the embedding a little at random from the first step, and the gradient reaches the
  first layer and z (so the posterior) at once.

Shapes: z (N, C) -> a shift (N, D, 1, 1) for embeddings (N, D, h, w).
"""

from __future__ import annotations

import torch
from torch import nn

#: How the MLP's last layer starts (module docstring).
STARTS = ("zero", "random")


def check_start(start: str) -> str:
    """``start`` if it is one of `STARTS`, else a ValueError naming the choices."""
    if start not in STARTS:
        raise ValueError(f"unknown latent prompt start {start!r}; use one of {STARTS}")
    return start


def start_last_layer(layer: nn.Linear | nn.Conv2d, start: str) -> None:
    """Start ``layer`` as ``start`` says: "zero" zeroes its weight and bias, "random" keeps the
    layer's own (PyTorch default) initialisation; anything else is refused (`check_start`)."""
    if check_start(start) == "zero":
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def paired_samples(prompt: nn.Module, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """z (N, C) or (B, K, C) as (N, C), checked to pair sample i with embedding i of
    ``embeddings`` (N, D, h, w); ``prompt`` gives ``latent_dim`` C and ``embed_dim`` D."""
    z = z.reshape(-1, prompt.latent_dim)
    if z.shape[0] != embeddings.shape[0] or embeddings.shape[1] != prompt.embed_dim:
        raise ValueError(
            f"{type(prompt).__name__} pairs embedding i with sample i: got embeddings {tuple(embeddings.shape)} "
            f"(expected {prompt.embed_dim} channels) and {z.shape[0]} samples of dimension {prompt.latent_dim}"
        )
    return z


class LatentDensePrompt(nn.Module):
    """MLP(z) added to every position of the image embedding (SAM's dense-prompt channel).

    Args:
        latent_dim: C, the latent sample's dimension.
        embed_dim: D, the image embedding's channels (SAM's ``prompt_embed_dim``, 256).
        hidden_dim: width of the MLP's hidden layer.
        start: "zero" (the identity until trained) or "random" (module docstring).

    Example:
        >>> prompt = LatentDensePrompt(latent_dim=6, embed_dim=32)
        >>> embeddings = torch.randn(4, 32, 8, 8)
        >>> torch.equal(prompt(embeddings, torch.randn(4, 6)), embeddings)  # identity until trained
        True
    """

    def __init__(self, latent_dim: int, embed_dim: int, hidden_dim: int = 64, start: str = "zero") -> None:
        super().__init__()
        check_start(start)  # before any layer draws its weights
        self.latent_dim, self.embed_dim = latent_dim, embed_dim
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim))
        start_last_layer(self.net[-1], start)

    def forward(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """embeddings (N, D, h, w) and z (N, C), or (B, K, C) with N = B * K image-major ->
        (N, D, h, w): each embedding shifted by its own sample's vector."""
        z = paired_samples(self, embeddings, z)
        return embeddings + self.net(z.to(embeddings.dtype))[:, :, None, None]
