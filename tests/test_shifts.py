"""All adapters' per-sample terms at once (`adapter_shifts`) equal the adapter-by-adapter chain."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters import UncertaintyAdapterConfig
from uncertainty_adapters.adapter import UncertaintyAdapter
from uncertainty_adapters.shifts import adapter_shifts

EMBED, ADAPTERS, BATCH = 32, 4, 3


def _adapters(interaction: str) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    config = UncertaintyAdapterConfig(latent_dim=6, interaction=interaction, latent_placement="residual")
    adapters = torch.nn.ModuleList(
        UncertaintyAdapter(EMBED, config, ADAPTERS, is_last=i == ADAPTERS - 1) for i in range(ADAPTERS)
    )
    with torch.no_grad():  # as if trained: the zero-initialised layers too
        for param in adapters.parameters():
            param.normal_(0, 0.3)
    return adapters


def _one_by_one(adapters, p, z) -> torch.Tensor:
    """The paper's order: adapter i maps (p_i, z) to f_i and p_{i+1}; W_f f_i = reconstruct(f_i)."""
    shifts = []
    for adapter in adapters:
        feature, p = adapter.interaction(p, z)
        shifts.append(adapter.reconstruct(feature))
    return torch.stack(shifts, dim=1)


def test_the_unbatched_path_is_the_adapter_by_adapter_chain():
    adapters = _adapters("cmsm")
    p, z = torch.randn(BATCH, ADAPTERS), torch.randn(BATCH, 6)
    assert torch.equal(adapter_shifts(adapters, p, z, batched=False), _one_by_one(adapters, p, z))


def test_a_model_gives_the_same_outputs_with_either_path():
    from uncertainty_adapters import inject_uncertainty_adapters

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(EMBED, EMBED), torch.nn.GELU()) for _ in range(3))
    backbone = torch.nn.Sequential(*blocks)
    model = inject_uncertainty_adapters(backbone, UncertaintyAdapterConfig(latent_dim=6, embed_dim=EMBED), blocks=list(blocks))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.3)
    x, z = torch.randn(BATCH, 7, EMBED), torch.randn(BATCH, 2, 6)  # K = 2 hypotheses per image
    batched = model(x, z=z)
    model.batched_shifts = False
    torch.testing.assert_close(model(x, z=z), batched, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interaction", ["cmsm", "concat", "sample", "position"])
def test_shifts_equal_the_adapter_by_adapter_chain(interaction):
    adapters = _adapters(interaction)
    p, z = torch.randn(BATCH, ADAPTERS), torch.randn(BATCH, 6)
    shifts = adapter_shifts(adapters, p, z)
    assert shifts.shape == (BATCH, ADAPTERS, EMBED)
    torch.testing.assert_close(shifts, _one_by_one(adapters, p, z), rtol=1e-5, atol=1e-6)


def test_an_adapter_given_its_shift_adds_it_to_every_token():
    adapters = _adapters("cmsm")
    x, p, z = torch.randn(BATCH, 5, 5, EMBED), torch.randn(BATCH, ADAPTERS), torch.randn(BATCH, 6)
    reference, _ = adapters[0](x, p, z)
    shifted, p_next = adapters[0](x, None, None, shift=adapter_shifts(adapters, p, z)[:, 0])
    torch.testing.assert_close(shifted, reference, rtol=1e-5, atol=1e-5)
    assert p_next is None


def test_plain_adapters_have_no_shift():
    assert adapter_shifts(_adapters("none"), None, None) is None


def test_shifts_are_computed_in_the_parameter_dtype_under_autocast():
    adapters = _adapters("cmsm")
    p, z = torch.randn(BATCH, ADAPTERS).bfloat16(), torch.randn(BATCH, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        shifts = adapter_shifts(adapters, p, z)
    assert shifts.dtype == torch.float32
    torch.testing.assert_close(shifts, _one_by_one(adapters, p.float(), z), rtol=1e-5, atol=1e-6)
