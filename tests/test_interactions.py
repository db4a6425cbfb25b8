"""The five interaction variants (paper Table 2) mean what the paper says they mean."""

from __future__ import annotations

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.cmsm import CMSM, ConcatInteraction, PositionInteraction, SampleInteraction

from .backbones import Backbone, perturb_adapters

L, C, HIDDEN = 4, 6, 16


def _perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    return module


def _outputs_for_two_z(interaction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The same images run with two different latent samples."""
    backbone = Backbone("sam")
    model = backbone.inject(ua.UncertaintyAdapterConfig(interaction=interaction))
    perturb_adapters(model)
    x = backbone.images(2)
    with torch.no_grad():
        return model(x, z=torch.randn(2, C)), model(x, z=torch.randn(2, C))


def test_cmsm_matches_equations_1_to_3_written_element_by_element():
    torch.manual_seed(0)
    cmsm = _perturbed(CMSM(L, C, HIDDEN, emits_next=True))
    p, z = torch.randn(3, L), torch.randn(3, C)
    f, p_next = cmsm(p, z)
    for b in range(3):
        p_feat = cmsm.position.position_mlp(p[b])  # Eq. 1
        q, k, v = cmsm.w11(p_feat), cmsm.w21(z[b]), cmsm.w22(z[b])
        z_mod = torch.stack(
            [sum(v[i] * torch.relu(q[i] * k[j]) for i in range(C)) for j in range(C)]
        )  # Eq. 2: z' = w22(z) ReLU(Trans(w11(p')) w21(z))
        condition = cmsm.position.w12(p_feat)
        torch.testing.assert_close(f[b], torch.relu(z_mod) * condition)  # Eq. 3
        torch.testing.assert_close(p_next[b], cmsm.position.next_position(condition))  # Eq. 5


@pytest.mark.parametrize("cls", [CMSM, ConcatInteraction, PositionInteraction])
def test_interactions_are_computed_per_sample(cls):
    module = _perturbed(cls(L, C, HIDDEN, emits_next=True))
    p, z = torch.randn(4, L), torch.randn(4, C)
    f, p_next = module(p, z)
    f1, p_next1 = module(p[2:3], z[2:3])
    torch.testing.assert_close(f[2:3], f1)
    torch.testing.assert_close(p_next[2:3], p_next1)


@pytest.mark.parametrize("cls", [CMSM, ConcatInteraction])
def test_cmsm_and_concat_read_both_p_and_z(cls):
    module = _perturbed(cls(L, C, HIDDEN, emits_next=True))
    p, z = torch.randn(2, L), torch.randn(2, C)
    f = module(p, z)[0]
    assert not torch.allclose(f, module(p, torch.randn(2, C))[0])
    assert not torch.allclose(f, module(torch.randn(2, L), z)[0])


def test_sample_interaction_ignores_p():
    module = SampleInteraction(C)
    z = torch.randn(2, C)
    assert torch.equal(module(torch.randn(2, L), z)[0], module(torch.randn(2, L), z)[0])
    assert module(None, z)[1] is None


def test_position_interaction_ignores_z():
    module = _perturbed(PositionInteraction(L, C, HIDDEN, emits_next=True))
    p = torch.randn(2, L)
    assert torch.equal(module(p, torch.randn(2, C))[0], module(p, None)[0])


def test_last_adapter_has_no_next_position_mlp():
    module = CMSM(L, C, HIDDEN, emits_next=False)
    assert module.position.next_position is None
    assert module(torch.randn(2, L), torch.randn(2, C))[1] is None


@pytest.mark.parametrize("interaction", ["none", "position"])
def test_deterministic_variants_ignore_z(interaction):
    first, second = _outputs_for_two_z(interaction)
    assert torch.equal(first, second)


@pytest.mark.parametrize("interaction", ["cmsm", "concat", "sample"])
def test_stochastic_variants_respond_to_z(interaction):
    first, second = _outputs_for_two_z(interaction)
    assert (first - second).abs().max() > 1e-3


@pytest.mark.parametrize("interaction", ["none", "position"])
def test_deterministic_variants_run_without_z(interaction):
    backbone = Backbone("timm")
    model = backbone.inject(ua.UncertaintyAdapterConfig(interaction=interaction))
    assert model(backbone.images(2)).shape == (2, 5)


def test_module_layout_of_each_variant():
    layouts = {}
    for interaction in ua.INTERACTIONS:
        model = Backbone("timm").inject(ua.UncertaintyAdapterConfig(interaction=interaction))
        layouts[interaction] = (model.condition is not None, model.recon is not None, model.adapters[0].interaction is not None)
    assert layouts == {
        "cmsm": (True, True, True),
        "concat": (True, True, True),
        "sample": (False, True, True),
        "position": (True, False, True),
        "none": (False, False, False),
    }
