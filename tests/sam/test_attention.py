"""SdpaAttention: segment-anything's attention computed with scaled_dot_product_attention."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, add_decomposed_rel_pos, get_rel_pos
from torch.utils._python_dispatch import TorchDispatchMode

from uncertainty_adapters.integrations.sam import (
    SdpaAttention,
    UncertaintySam,
    build_sam,
    use_sdpa_attention,
    uses_sdpa_attention,
)
from uncertainty_adapters.integrations.sam import attention
from uncertainty_adapters.integrations.sam.attention import decomposed_rel_pos_bias, relative_position_table

from .conftest import TINY, images, trained_looking_sam


def _attention_pair(input_size, dim=64, heads=4, seed=0):
    """segment-anything's Attention with random rel-pos tables, and an SDPA copy of it."""
    torch.manual_seed(seed)
    reference = Attention(dim, num_heads=heads, use_rel_pos=True, input_size=input_size)
    with torch.no_grad():
        reference.rel_pos_h.normal_()
        reference.rel_pos_w.normal_()
    sdpa = copy.deepcopy(reference)
    use_sdpa_attention(sdpa)
    return reference, sdpa


# (token grid, the grid the rel-pos tables were made for): windows, a global grid, and tables
# that get_rel_pos has to interpolate.
GRIDS = [((7, 7), (7, 7)), ((14, 14), (14, 14)), ((16, 16), (8, 8))]


@pytest.mark.parametrize("grid, table_size", GRIDS, ids=["window7", "global14", "interpolated"])
def test_sdpa_attention_equals_segment_anythings_in_float32(grid, table_size):
    reference, sdpa = _attention_pair(table_size)
    x = torch.randn(3, *grid, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sdpa(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid, table_size", GRIDS, ids=["window7", "global14", "interpolated"])
def test_sdpa_attention_gradients_equal_segment_anythings(grid, table_size):
    # forward_sdpa: the SDPA path itself (on a CPU, forward takes segment-anything's code when
    # the mask needs a gradient; on CUDA this is the training path).
    reference, sdpa = _attention_pair(table_size)
    x = torch.randn(2, *grid, 64, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(2, *grid, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for run, module in ((reference, reference), (sdpa.forward_sdpa, sdpa)):
        inputs = x.clone().requires_grad_(True)
        (run(inputs) * upstream).sum().backward()
        grads.append([inputs.grad, module.qkv.weight.grad, module.rel_pos_h.grad, module.rel_pos_w.grad])
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_a_batch_whose_mask_would_exceed_the_limit_goes_through_sdpa_in_chunks_with_the_same_result(monkeypatch):
    reference, sdpa = _attention_pair((14, 14))
    x = torch.randn(5, 14, 14, 64, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(5, 14, 14, 64, generator=torch.Generator().manual_seed(2))
    row_bytes = 4 * 196 * 196 * 4  # heads * tokens^2 * float32 bytes: one image's mask
    calls = []
    original = attention.F.scaled_dot_product_attention

    def counted(q, *args, **kwargs):
        calls.append(q.shape[0])
        return original(q, *args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", counted)
    outputs, grads = [], []
    for limit in (None, 2 * row_bytes):
        if limit is not None:
            monkeypatch.setattr(attention, "SDPA_MASK_BYTES", limit)
        inputs = x.clone().requires_grad_(True)
        out = sdpa.forward_sdpa(inputs)
        (out * upstream).sum().backward()
        outputs.append(out)
        grads.append([inputs.grad, sdpa.qkv.weight.grad.clone(), sdpa.rel_pos_h.grad.clone()])
        sdpa.zero_grad()
    assert calls == [5, 2, 2, 1]  # one call, then rows of at most two images
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outputs[1], reference(x), rtol=1e-5, atol=1e-5)
    for chunked, whole in zip(grads[1], grads[0]):
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_rows_per_sdpa_call_fit_the_mask_limit_and_are_at_least_one():
    # vit_b's global grid at 1024 px: 12 heads, 64 x 64 tokens; 2 GiB by default
    assert attention.sdpa_rows_per_call(12, 4096, 2) == 5  # bfloat16: 403 MB an image
    assert attention.sdpa_rows_per_call(12, 4096, 4) == 2  # float32: the paper's batch of 2 in one call
    assert attention.sdpa_rows_per_call(12, 196, 4) == 1164  # a 14 x 14 window: never chunked in practice
    assert attention.sdpa_rows_per_call(12, 4096, 4, limit=1) == 1


def test_on_a_cpu_a_mask_that_needs_a_gradient_takes_segment_anythings_code(monkeypatch):
    calls = []
    original = attention.F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", counted)
    reference, sdpa = _attention_pair((7, 7))
    x = torch.randn(2, 7, 7, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sdpa(x)
    assert calls == [1]
    assert torch.equal(sdpa(x.requires_grad_(True)), reference(x))
    assert calls == [1]


def test_the_bias_is_what_add_decomposed_rel_pos_adds():
    reference, _ = _attention_pair((6, 6), dim=32, heads=1)
    q = torch.randn(5, 36, 32, generator=torch.Generator().manual_seed(3))
    zeros = torch.zeros(5, 36, 36)
    expected = add_decomposed_rel_pos(zeros, q, reference.rel_pos_h, reference.rel_pos_w, (6, 6), (6, 6))
    bias = decomposed_rel_pos_bias(q, reference.rel_pos_h, reference.rel_pos_w, (6, 6), (6, 6))
    torch.testing.assert_close(bias, expected, rtol=1e-6, atol=1e-6)


def test_sdpa_encoder_equals_the_reference_encoder_in_float32():
    reference = trained_looking_sam().image_encoder
    use_sdpa_attention(reference, enabled=False)
    sdpa = copy.deepcopy(reference)
    use_sdpa_attention(sdpa)
    x = images(2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), reference(x), rtol=1e-5, atol=1e-5)


def test_sdpa_attention_works_under_bf16_autocast():
    reference, sdpa = _attention_pair((7, 7))
    x = torch.randn(2, 7, 7, 64, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = sdpa(x), reference(x)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=0.05, atol=0.05)


def test_switching_back_restores_segment_anythings_attention_and_keeps_weights():
    sam = build_sam(TINY)
    attentions = [m for m in sam.modules() if isinstance(m, Attention)]
    state = {k: v.clone() for k, v in sam.state_dict().items()}
    assert use_sdpa_attention(sam, enabled=False) == len(attentions) == TINY.encoder_depth
    assert all(type(m) is Attention for m in attentions) and not uses_sdpa_attention(sam)
    use_sdpa_attention(sam)
    assert all(type(m) is SdpaAttention for m in attentions) and uses_sdpa_attention(sam)
    assert sam.state_dict().keys() == state.keys()
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in state.items())


def test_build_sam_uses_sdpa_attention_unless_asked_not_to():
    assert uses_sdpa_attention(build_sam(TINY))
    assert not uses_sdpa_attention(build_sam(TINY, sdpa_attention=False))


def test_a_model_without_sam_attention_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="holds no segment-anything image-encoder Attention"):
        use_sdpa_attention(torch.nn.Linear(2, 2))


def test_uncertainty_sam_can_switch_its_encoders_attention():
    model = UncertaintySam(trained_looking_sam())
    use_sdpa_attention(model, enabled=False)
    assert not uses_sdpa_attention(model)
    use_sdpa_attention(model)
    assert uses_sdpa_attention(model.image_encoder)


@pytest.mark.parametrize("q_size, k_size, length", [(14, 14, 27), (16, 16, 15), (8, 16, 31), (16, 8, 31)],
                         ids=["window14", "resized", "fewer-queries", "fewer-keys"])
def test_relative_position_table_equals_segment_anythings_get_rel_pos(q_size, k_size, length):
    table = torch.randn(length, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(relative_position_table(q_size, k_size, table), get_rel_pos(q_size, k_size, table))


class _DeviceLog(TorchDispatchMode):
    """Records the set of devices of the tensors each dispatched operation receives."""

    def __init__(self):
        super().__init__()
        self.devices = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs or {})) if isinstance(a, torch.Tensor)]
        self.devices.append({t.device.type for t in tensors})
        return func(*args, **(kwargs or {}))


def _devices_mixed(function) -> bool:
    table = torch.empty(27, 8, device="meta")  # any device but the CPU shows a host-made index
    with _DeviceLog() as log:
        function(14, 14, table)
    return any(len(devices) > 1 for devices in log.devices)


def test_relative_position_table_makes_its_index_on_the_tables_device():
    # A CUDA graph cannot record the host-to-device copy of an index made on the CPU.
    assert _devices_mixed(get_rel_pos)  # segment-anything's gathers with a CPU index
    assert not _devices_mixed(relative_position_table)
