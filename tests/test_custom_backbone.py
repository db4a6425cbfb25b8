"""A ViT the library does not know, adapted through blocks= as docs/guide.md section 3 describes.

The backbone here is unlike the known families on purpose: its blocks sit in a nested list under
a name no lookup tries, take and return (tokens, attention) tuples, and it keeps a class token.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import uncertainty_adapters as ua


class TupleBlock(nn.Module):
    """Pre-norm transformer block returning (tokens, attention weights), as transformers layers do."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads=2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm1(tokens)
        attended, weights = self.attn(normed, normed, normed)
        tokens = tokens + attended
        return tokens + self.mlp(self.norm2(tokens)), weights


class HomeMadeViT(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, kernel_size=8, stride=8)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.trunk = nn.Module()
        self.trunk.stages = nn.ModuleList(TupleBlock(dim) for _ in range(depth))
        self.head = nn.Linear(dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        for stage in self.trunk.stages:
            tokens, _ = stage(tokens)
        return self.head(tokens[:, 1:])  # (B, N, 1) per-patch logits


def _backbone(seed: int = 0) -> HomeMadeViT:
    torch.manual_seed(seed)
    return HomeMadeViT().eval()


def _images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_without_blocks_the_error_says_how_to_pass_them():
    with pytest.raises(ValueError, match=r"cannot find the transformer blocks of HomeMadeViT.*blocks="):
        ua.inject_uncertainty_adapters(_backbone())


@pytest.mark.parametrize("form", ["path", "container", "modules", "names"])
def test_every_form_of_blocks_finds_the_same_blocks(form):
    backbone = _backbone()
    blocks = {
        "path": "trunk.stages",
        "container": backbone.trunk.stages,
        "modules": list(backbone.trunk.stages),
        "names": ["trunk.stages.0", "trunk.stages.1", "trunk.stages.2"],
    }[form]
    model = ua.inject_uncertainty_adapters(backbone, blocks=blocks)
    assert model.block_names == ("trunk.stages.0", "trunk.stages.1", "trunk.stages.2")
    assert model.embed_dim == 32


def test_tuple_returning_blocks_with_a_class_token_start_as_the_identity():
    backbone = _backbone()
    x = _images()
    with torch.no_grad():
        reference = backbone(x)
        out = ua.inject_uncertainty_adapters(backbone, blocks="trunk.stages")(x, z=torch.randn(2, 6))
    # The adapters add exact zeros; the attention kernels may round differently on new memory.
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)


def test_a_training_step_moves_the_adapters_and_leaves_the_backbone_alone():
    backbone = _backbone()
    before = {name: tensor.clone() for name, tensor in backbone.state_dict().items()}
    model = ua.inject_uncertainty_adapters(backbone, blocks="trunk.stages")
    latent_heads = ua.LatentHeads(in_channels=3, latent_dim=6, num_filters=(8,), resolution=16)
    adapters_before = {name: tensor.clone() for name, tensor in model.adapter_state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad] + list(latent_heads.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    x = _images(4)
    target = (torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    for _ in range(2):
        sample = latent_heads(x, nn.functional.interpolate(target, size=32))
        logits = model(x, z=sample.z).transpose(1, 2).reshape(4, 1, 4, 4)
        terms = ua.elbo_loss(logits, target, sample.kl, beta=0.01)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
    assert all(torch.equal(before[name], tensor) for name, tensor in backbone.state_dict().items())
    moved = [name for name, tensor in model.adapter_state_dict().items() if not torch.equal(adapters_before[name], tensor)]
    assert any(name.startswith("adapters.") for name in moved)


def test_k_hypotheses_differ_once_the_adapters_have_weights():
    model = ua.inject_uncertainty_adapters(_backbone(), blocks="trunk.stages")
    with torch.no_grad():
        for tensor in model.adapter_state_dict().values():
            tensor.add_(0.2 * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(3)))
        out = model(_images(1), z=torch.randn(1, 3, 6))
    assert out.shape == (3, 16, 1)
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_a_subset_of_blocks_gets_adapters_behind_those_blocks_only():
    model = ua.inject_uncertainty_adapters(_backbone(), blocks=["trunk.stages.1", "trunk.stages.2"])
    assert model.num_blocks == 2
    assert model(_images(), z=torch.randn(2, 6)).shape == (2, 16, 1)


def test_saved_adapters_load_into_a_fresh_copy_without_blocks_again(tmp_path):
    model = ua.inject_uncertainty_adapters(_backbone(), blocks="trunk.stages")
    with torch.no_grad():
        for tensor in model.adapter_state_dict().values():
            tensor.add_(0.1)
    model.save_adapters(tmp_path)
    restored = ua.load_adapters(_backbone(), tmp_path)
    x, z = _images(), torch.randn(2, 6)
    with torch.no_grad():
        assert torch.equal(restored(x, z=z), model(x, z=z))
