"""The fused relative-position attention kinds: "fused" (augmented q/k through mask-free SDPA)

and "flex" (FlexAttention with a score_mod) compute segment-anything's attention."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from uncertainty_adapters.integrations.sam import (
    ATTENTION_KINDS,
    FlexRelPosAttention,
    FusedRelPosAttention,
    attention_kind,
    build_sam,
    build_uncertainty_sam,
    sample_point_prompts,
    use_attention,
)
from uncertainty_adapters.integrations.sam import attention

from .conftest import TINY, images, trained_looking_sam

# On a CPU FlexAttention runs uncompiled (a reference implementation) and says so once.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

# (token grid, the grid the rel-pos tables were made for): a 14 x 14 window as in SAM, a global
# grid, a non-square window count's odd size, and tables that get_rel_pos has to interpolate.
GRIDS = [((14, 14), (14, 14)), ((16, 16), (16, 16)), ((7, 7), (7, 7)), ((16, 16), (8, 8))]
IDS = ["window14", "global16", "window7", "interpolated"]


def _pair(kind, input_size, dim=64, heads=4, seed=0):
    """segment-anything's Attention with random rel-pos tables, and a copy of the given kind."""
    torch.manual_seed(seed)
    reference = Attention(dim, num_heads=heads, use_rel_pos=True, input_size=input_size)
    with torch.no_grad():
        reference.rel_pos_h.normal_()
        reference.rel_pos_w.normal_()
    other = copy.deepcopy(reference)
    use_attention(other, kind)
    return reference, other


def _forward_and_grads(module, x, upstream):
    module.zero_grad()
    inputs = x.clone().requires_grad_(True)
    out = module(inputs)
    (out * upstream).sum().backward()
    return [out.detach(), inputs.grad, module.qkv.weight.grad, module.rel_pos_h.grad, module.rel_pos_w.grad]


@pytest.mark.parametrize("grid, table_size", GRIDS, ids=IDS)
def test_fused_attention_equals_segment_anythings_forward_in_float32(grid, table_size):
    reference, fused = _pair("fused", table_size)
    x = torch.randn(3, *grid, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid, table_size", GRIDS, ids=IDS)
def test_fused_attention_gradients_equal_segment_anythings(grid, table_size):
    # Gradients reach the input (the adapters sit upstream of q), qkv and both rel-pos tables.
    reference, fused = _pair("fused", table_size)
    x = torch.randn(2, *grid, 64, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(2, *grid, 64, generator=torch.Generator().manual_seed(2))
    ours, theirs = _forward_and_grads(fused, x, upstream), _forward_and_grads(reference, x, upstream)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
    for got, expected in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_fused_attention_calls_sdpa_without_a_mask(monkeypatch):
    seen = []
    original = attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("attn_mask"))
        return original(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    _, fused = _pair("fused", (7, 7))
    fused(torch.randn(2, 7, 7, 64).requires_grad_(True)).sum().backward()
    assert seen == [None]


@pytest.mark.parametrize("grid, table_size", GRIDS, ids=IDS)
def test_flex_attention_equals_segment_anythings_forward_in_float32(grid, table_size):
    reference, flex = _pair("flex", table_size)
    x = torch.randn(2, *grid, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(flex(x), reference(x), rtol=1e-5, atol=1e-5)


def test_flex_attention_on_a_cpu_takes_the_fused_path_when_a_gradient_is_needed():
    # PyTorch has no FlexAttention backward on a CPU; the gradients are still segment-anything's.
    reference, flex = _pair("flex", (7, 7))
    x = torch.randn(2, 7, 7, 64, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(2, 7, 7, 64, generator=torch.Generator().manual_seed(2))
    for got, expected in zip(_forward_and_grads(flex, x, upstream), _forward_and_grads(reference, x, upstream)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["fused", "flex"])
def test_an_encoder_with_a_fused_kind_equals_the_reference_encoder(kind):
    reference = trained_looking_sam().image_encoder
    use_attention(reference, "segment-anything")
    other = copy.deepcopy(reference)
    use_attention(other, kind)
    x = images(2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(other(x), reference(x), rtol=1e-5, atol=1e-5)


def test_fused_attention_works_under_bf16_autocast():
    reference, fused = _pair("fused", (14, 14))
    x = torch.randn(2, 14, 14, 64, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = fused(x), reference(x)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=0.05, atol=0.05)


def test_use_attention_switches_every_kind_and_keeps_keys_and_weights():
    sam = build_sam(TINY)
    state = {k: v.clone() for k, v in sam.state_dict().items()}
    for kind, cls in ATTENTION_KINDS.items():
        assert use_attention(sam, kind) == TINY.encoder_depth
        assert attention_kind(sam) == kind
        assert all(type(m) is cls for m in sam.modules() if isinstance(m, Attention))
    assert sam.state_dict().keys() == state.keys()
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in state.items())


def test_an_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown attention kind 'flash'.*fused"):
        use_attention(build_sam(TINY), "flash")


def test_build_uncertainty_sam_takes_the_attention_kind():
    model = build_uncertainty_sam(TINY, attention="fused")
    assert attention_kind(model) == "fused"
    assert isinstance(next(m for m in model.modules() if isinstance(m, Attention)), FusedRelPosAttention)
    assert not isinstance(next(m for m in model.modules() if isinstance(m, Attention)), FlexRelPosAttention)


def test_a_uasam_training_step_with_fused_attention_matches_the_reference_gradients():
    torch.manual_seed(0)
    reference = build_uncertainty_sam(TINY, attention="segment-anything")
    fused = copy.deepcopy(reference)
    use_attention(fused, "fused")
    x = images(2)
    masks = torch.zeros(2, 1, TINY.image_size, TINY.image_size)
    masks[:, :, 20:40, 24:44] = 1
    prompts = sample_point_prompts(masks, generator=torch.Generator().manual_seed(0))
    grads = []
    for model in (reference, fused):
        model.train()
        torch.manual_seed(5)
        out = model(x, prompts, masks)
        (out.logits.square().mean() + out.kl.mean()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-5, msg=name)
