"""The z path's forms: CMSM's modulation (relu / softmax), where W_f f_i enters (residual /
bottleneck), free bits; and adapter folders saved before these options existed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.adapter import UncertaintyAdapter
from uncertainty_adapters.cmsm import CMSM
from uncertainty_adapters.shifts import adapter_shifts

LEGACY = Path(__file__).parent / "fixtures" / "legacy_adapters"
EMBED, ADAPTERS, BATCH = 32, 4, 3


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # as if trained: the zero-initialised layers too
        for param in module.parameters():
            param.normal_(0, 0.3)
    return module


@pytest.mark.parametrize("interaction", ["cmsm", "concat"])
def test_an_adapter_folder_saved_before_the_options_existed_reproduces_its_outputs(interaction):
    reference = ckpt.load_tensors(LEGACY / interaction / "reference.safetensors")
    blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU()) for _ in range(3))
    backbone = torch.nn.Sequential(*blocks)
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in reference.items() if k.startswith("backbone.")})
    model = ua.load_adapters(backbone, LEGACY / interaction / "adapters")
    assert (model.config.cmsm_activation, model.config.latent_placement) == ("relu", "residual")
    with torch.no_grad():
        torch.testing.assert_close(model(reference["x"], z=reference["z"]), reference["output"], rtol=1e-6, atol=1e-6)


def _legacy_backbone(reference: dict) -> torch.nn.Sequential:
    backbone = torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU()) for _ in range(3)))
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in reference.items() if k.startswith("backbone.")})
    return backbone


@pytest.mark.parametrize("interaction", ["cmsm", "concat"])
def test_an_old_adapter_folder_loads_into_a_model_already_built_with_the_papers_forms(interaction):
    """What a run folder does: the model is built from run.json first, then the adapters are loaded
    into it; the old folder's config (without the new keys) must compare equal to the legacy forms."""
    folder = LEGACY / interaction / "adapters"
    reference = ckpt.load_tensors(LEGACY / interaction / "reference.safetensors")
    saved = ua.UncertaintyAdapterConfig.from_dict(json.loads((folder / "adapter_config.json").read_text())["config"])
    model = ua.inject_uncertainty_adapters(_legacy_backbone(reference), saved, blocks=["0", "1", "2"])
    assert ua.load_adapters(model, folder) is model
    with torch.no_grad():
        torch.testing.assert_close(model(reference["x"], z=reference["z"]), reference["output"], rtol=1e-6, atol=1e-6)

    other = dataclasses.replace(saved, cmsm_activation="softmax")
    rebuilt = ua.inject_uncertainty_adapters(_legacy_backbone(reference), other, blocks=["0", "1", "2"])
    with pytest.raises(ckpt.CheckpointMismatchError, match="cmsm_activation"):
        ua.load_adapters(rebuilt, folder)


def test_a_config_dict_without_the_new_keys_means_the_papers_forms():
    old = {"activation": "relu", "bottleneck_ratio": 0.25, "embed_dim": None, "interaction": "cmsm",
           "latent_dim": 6, "mlp_hidden_dim": 64}
    config = ua.UncertaintyAdapterConfig.from_dict(old)
    assert (config.cmsm_activation, config.latent_placement) == ("relu", "residual")


def test_the_config_records_both_forms_in_its_dict():
    config = ua.UncertaintyAdapterConfig(cmsm_activation="softmax", latent_placement="bottleneck")
    assert ua.UncertaintyAdapterConfig.from_dict(config.to_dict()) == config
    assert {"cmsm_activation", "latent_placement"} <= set(config.to_dict())


@pytest.mark.parametrize("field", ["cmsm_activation", "latent_placement"])
def test_unknown_forms_are_refused_naming_the_field(field):
    with pytest.raises(ValueError, match=field):
        ua.UncertaintyAdapterConfig(**{field: "tanh"})


def _dead_relu_cmsm() -> tuple[CMSM, CMSM, torch.Tensor, torch.Tensor]:
    """A relu CMSM and a softmax CMSM with the same weights, and inputs where the relu form is all zero."""
    torch.manual_seed(0)
    relu = CMSM(num_adapters=4, latent_dim=6, hidden_dim=16, emits_next=False, activation="relu")
    softmax = CMSM(num_adapters=4, latent_dim=6, hidden_dim=16, emits_next=False, activation="softmax")
    softmax.load_state_dict(relu.state_dict())
    with torch.no_grad():  # w22(z) <= 0 everywhere: v A <= 0 for any A >= 0, so ReLU(v A) = 0
        relu.w22.weight.zero_()
        relu.w22.bias.fill_(-1.0)
        softmax.w22.weight.zero_()
        softmax.w22.bias.fill_(-1.0)
    return relu, softmax, torch.randn(BATCH, 4), torch.randn(BATCH, 6)


def test_the_relu_form_can_be_exactly_zero_and_pass_no_gradient_to_z():
    relu, _, p, z = _dead_relu_cmsm()
    z.requires_grad_(True)
    feature, _ = relu(p, z)
    feature.sum().backward()
    assert torch.equal(feature, torch.zeros_like(feature)) and torch.equal(z.grad, torch.zeros_like(z))


def test_the_softmax_form_is_not_zero_where_the_relu_form_is():
    _, softmax, p, z = _dead_relu_cmsm()
    feature, _ = softmax(p, z)
    assert (feature != 0).all()


def test_the_softmax_forms_modulation_rows_sum_to_one_and_scale_by_sqrt_c():
    torch.manual_seed(0)
    cmsm = CMSM(num_adapters=4, latent_dim=6, hidden_dim=16, emits_next=False, activation="softmax")
    p, z = torch.randn(2, 4), torch.randn(2, 6)
    p_feat, condition, _ = cmsm.position(p)
    scores = cmsm.w11(p_feat)[:, :, None] * cmsm.w21(z)[:, None, :] / 6 ** 0.5
    expected = torch.einsum("bc,bcd->bd", cmsm.w22(z), scores.softmax(-1)) * condition
    torch.testing.assert_close(cmsm(p, z)[0], expected)


@pytest.mark.parametrize("placement", ["residual", "bottleneck"])
def test_both_placements_start_as_the_identity(placement):
    config = ua.UncertaintyAdapterConfig(latent_dim=6, latent_placement=placement)
    adapter = UncertaintyAdapter(EMBED, config, ADAPTERS, is_last=False)
    x = torch.randn(BATCH, 9, EMBED)
    assert torch.equal(adapter(x, torch.randn(BATCH, ADAPTERS), torch.randn(BATCH, 6))[0], x)


def _change_by_z(placement: str) -> torch.Tensor:
    """How a trained-like adapter's output moves when z changes, per token: (B, N, D)."""
    torch.manual_seed(0)
    config = ua.UncertaintyAdapterConfig(latent_dim=6, latent_placement=placement)
    adapter = _perturbed(UncertaintyAdapter(EMBED, config, ADAPTERS, is_last=False))
    x, p = torch.randn(BATCH, 9, EMBED), torch.randn(BATCH, ADAPTERS)
    return adapter(x, p, torch.randn(BATCH, 6))[0] - adapter(x, p, torch.randn(BATCH, 6))[0]


def test_the_residual_placement_moves_every_token_by_the_same_vector():
    change = _change_by_z("residual")
    torch.testing.assert_close(change, change[:, :1].expand_as(change))


def test_the_bottleneck_placement_moves_each_token_differently():
    change = _change_by_z("bottleneck")
    assert (change - change[:, :1]).abs().amax() > 1e-2


def test_the_bottleneck_placements_z_path_has_a_random_start():
    config = ua.UncertaintyAdapterConfig(latent_dim=6, latent_placement="bottleneck")
    adapter = UncertaintyAdapter(EMBED, config, ADAPTERS, is_last=False)
    assert adapter.reconstruct[-2].weight.abs().sum() > 0
    assert adapter.reconstruct[-2].out_features == config.bottleneck_dim(EMBED)


@pytest.mark.parametrize("activation", ["relu", "softmax"])
@pytest.mark.parametrize("placement", ["residual", "bottleneck"])
def test_batched_shifts_equal_the_adapter_by_adapter_chain_for_every_form(activation, placement):
    torch.manual_seed(0)
    config = ua.UncertaintyAdapterConfig(latent_dim=6, cmsm_activation=activation, latent_placement=placement)
    adapters = _perturbed(torch.nn.ModuleList(
        UncertaintyAdapter(EMBED, config, ADAPTERS, is_last=i == ADAPTERS - 1) for i in range(ADAPTERS)))
    p, z = torch.randn(BATCH, ADAPTERS), torch.randn(BATCH, 6)
    torch.testing.assert_close(adapter_shifts(adapters, p, z), adapter_shifts(adapters, p, z, batched=False),
                               rtol=1e-5, atol=1e-6)


def test_a_model_with_the_bottleneck_placement_gives_the_same_outputs_with_either_shift_path():
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(EMBED, EMBED), torch.nn.GELU()) for _ in range(3))
    config = ua.UncertaintyAdapterConfig(latent_dim=6, embed_dim=EMBED, cmsm_activation="softmax",
                                         latent_placement="bottleneck")
    model = ua.inject_uncertainty_adapters(torch.nn.Sequential(*blocks), config, blocks=list(blocks))
    _perturbed(torch.nn.ModuleList(model.adapter_modules()))
    x, z = torch.randn(BATCH, 7, EMBED), torch.randn(BATCH, 2, 6)
    batched = model(x, z=z)
    model.batched_shifts = False
    torch.testing.assert_close(model(x, z=z), batched, rtol=1e-5, atol=1e-5)


def test_kl_per_dim_sums_to_the_kl():
    q = ua.DiagonalGaussian(torch.randn(2, 6), torch.randn(2, 6) * 0.3)
    p = ua.DiagonalGaussian(torch.randn(2, 6), torch.randn(2, 6) * 0.3)
    torch.testing.assert_close(q.kl_per_dim(p).sum(-1), q.kl(p))


def test_free_bits_leave_dimensions_below_the_floor_unpenalised():
    logits, target = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]])  # batch means 0.2 and 3.0 nats
    terms = ua.ElboLoss(beta=1.0, free_bits=0.5)(logits, target, kl)
    torch.testing.assert_close(terms.loss - terms.reconstruction, torch.tensor(0.5 + 3.0))
    torch.testing.assert_close(terms.kl, torch.tensor(3.2))  # the reported KL is the true one


def test_free_bits_need_the_kl_per_dimension():
    with pytest.raises(ValueError, match="per latent dimension"):
        ua.ElboLoss(free_bits=0.5)(torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4), torch.ones(2))
