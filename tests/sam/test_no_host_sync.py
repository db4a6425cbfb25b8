"""A UA-SAM training step (point prompts, the paper's mode) and K-sample inference run without
any op that reads a device value back to the host (on a GPU each would stall the step).

The ops are recorded with a TorchDispatchMode, so the property is checked on the CPU too."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import make_prompts

from .conftest import disc_masks, images, perturb_trainable, tiny_uncertainty_sam

SYNCING = {"nonzero", "_local_scalar_dense", "is_nonzero", "item", "masked_select", "unique", "equal"}


BOOLEAN_INDEXABLE = {"index", "index_put", "index_put_", "_index_put_impl_"}


def _indices(args) -> list:
    return list(args[1]) if len(args) > 1 and isinstance(args[1], (list, tuple)) else []


def _is_bool(index) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool


class _SyncSpy(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING:
            self.seen.append(name)
        elif name in BOOLEAN_INDEXABLE and any(_is_bool(index) for index in _indices(args)):
            self.seen.append(f"{name} with a boolean mask")  # needs the mask's count: a sync
        return func(*args, **(kwargs or {}))


def test_training_step_has_no_host_device_sync():
    model = tiny_uncertainty_sam()
    perturb_trainable(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = ua.ElboLoss(beta=1e-3, validate=False)
    masks, generator = disc_masks(2), torch.Generator().manual_seed(0)
    x = images(2)
    with _SyncSpy() as spy:
        prompts = make_prompts(masks, "point", generator)
        out = model(x, prompts, masks)
        loss_fn(out.logits, masks, out.kl).loss.backward()
    optimizer.step()  # Adam's step counters live on the CPU: outside the spy on purpose
    assert spy.seen == []


@pytest.mark.parametrize("prior", ["gaussian", "mixture"])
def test_k_sample_inference_has_no_host_device_sync(prior):
    model = tiny_uncertainty_sam().eval()
    if prior == "mixture":  # heads that sample a fitted mixture prior (the demo's)
        mixed = ua.LatentHeads(**{**model.latent_heads.config, "prior_components": 3})
        mixed.load_state_dict(model.latent_heads.state_dict(), strict=False)
        mixed.mixture_net.start_from(mixed.prior_net, generator=torch.Generator().manual_seed(0))
        mixed.mark_mixture_fitted()
        model.latent_heads = mixed.eval()
    masks = disc_masks(2)
    with torch.no_grad(), _SyncSpy() as spy:
        prompts = make_prompts(masks, "point", torch.Generator().manual_seed(0))
        model(images(2), prompts, num_samples=4)
    assert spy.seen == []
