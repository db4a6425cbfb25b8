"""`UncertaintyModel`: a frozen backbone whose transformer blocks are followed by uncertainty adapters.

Data flow (DESIGN.md section 3), for a backbone with blocks b_0 .. b_{L-1}:

    x -> b_0 -> [p_0 = condition(x)] -> adapter_0(x, p_0, z) -> b_1 -> adapter_1(x, p_1, z) -> ...
      -> adapter_{L-1}(x, p_{L-1}, z) + Recon(z) -> rest of the backbone (neck, norm, head, ...)

The adapters run in forward hooks on the blocks, so the backbone keeps its own forward, its
signature, its module names and its state-dict keys; `unload()` removes the hooks and gives the
backbone back untouched. The latent sample z and the adapters' per-sample terms travel in a
small per-call state that exists only while `UncertaintyModel.forward` runs.

The per-sample half of every adapter (the position chain p_0 -> p_1 -> ..., CMSM, the Eq. 4
MLP: a vector per sample and adapter that never reads the tokens) is computed for all adapters
at once behind block 0 (`shifts.adapter_shifts`); each adapter then adds its row to the tokens.
On a GPU this cuts the kernels launched per forward by about 400 for SAM vit_b.

K hypotheses per image: pass z of shape (B, K, C). Block 0's output does not depend on z, so it
is computed once per image and repeated K times (image-major) before the first adapter; the
backbone returns B * K outputs.

Activation checkpointing (`gradient_checkpointing_enable`): each block's forward runs together
with its adapter inside ``torch.utils.checkpoint.checkpoint`` (non-reentrant), with the shifts and z passed
as explicit inputs, so that the recomputation during backward does not depend on the per-call
state. The backbone's own checkpointing cannot be used: it re-runs the blocks outside the
forward call, without the adapters' inputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import checkpoint as ckpt
from .adapter import LatentReconstruction, PositionCondition, UncertaintyAdapter
from .config import UncertaintyAdapterConfig
from .shifts import adapter_shifts
from .targets import BlocksArg, infer_embed_dim, resolve_blocks

FORMAT_VERSION = 1


class _ForwardState:
    """What the block hooks need during one forward call; empty outside of it."""

    __slots__ = ("active", "z", "hypotheses", "shifts", "layout", "next_block")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.active = False
        self.z: torch.Tensor | None = None
        self.hypotheses = 1
        self.shifts: torch.Tensor | None = None  # (B, L, D), every adapter's W_f f_i
        self.layout: tuple[int, ...] | None = None  # memory order of block 0's tokens
        self.next_block = 0


def _memory_order(tensor: torch.Tensor) -> tuple[int, ...]:
    """The dims of ``tensor`` from outermost to innermost in memory (stable for ties)."""
    return tuple(sorted(range(tensor.dim()), key=lambda dim: tensor.stride(dim), reverse=True))


def _with_memory_order(tensor: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
    """``tensor`` (same values) laid out in memory in ``order`` (see `_memory_order`)."""
    if order is None or order == tuple(range(tensor.dim())) or _memory_order(tensor) == order:
        return tensor
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return tensor.permute(order).contiguous().permute(inverse)



def parameter_counts(*modules: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters of ``modules``, each parameter counted once even
    when several modules (or several places in one) share it."""
    seen: set[int] = set()
    trainable = total = 0
    for module in modules:
        for param in module.parameters():
            if id(param) in seen:
                continue
            seen.add(id(param))
            total += param.numel()
            trainable += param.numel() if param.requires_grad else 0
    return trainable, total

@dataclass(frozen=True)
class InjectionPlan:
    """Where and how wide: the resolved blocks of a backbone, before anything is changed."""

    block_names: tuple[str, ...]
    embed_dim: int


def plan_injection(model: nn.Module, config: UncertaintyAdapterConfig, blocks: BlocksArg = None) -> InjectionPlan:
    """Resolve the blocks and their width without modifying ``model``."""
    names = resolve_blocks(model, blocks)
    first = model.get_submodule(names[0])
    embed_dim = config.embed_dim if config.embed_dim is not None else infer_embed_dim(model, first)
    return InjectionPlan(tuple(names), embed_dim)


class UncertaintyModel(nn.Module):
    """A backbone with uncertainty adapters behind its transformer blocks.

    Build it with `inject_uncertainty_adapters`. Call it like the backbone, plus ``z``:
    ``model(*backbone_args, z=z, **backbone_kwargs)``, with z of shape (B, C) for one
    hypothesis per image or (B, K, C) for K (the backbone then returns B * K results,
    image-major). The user verbs: `print_trainable_parameters`, `save_adapters`, `unload`.

    Args:
        base_model: the backbone; its blocks get forward hooks, nothing else changes.
        config: the adapter configuration.
        plan: the resolved blocks and their width (see `plan_injection`).
        freeze_backbone: set ``requires_grad=False`` on every backbone parameter (restored by
            `unload`).

    Attributes:
        batched_shifts: compute every adapter's per-sample term in one batched pass behind
            block 0 (True, the default; `shifts.adapter_shifts`) or adapter by adapter (False:
            the same values up to rounding, several hundred more small kernels on a GPU; kept
            so the two can be timed against each other, benchmarks/speedups.py ``shifts``).

    Example:
        >>> import timm
        >>> from uncertainty_adapters import inject_uncertainty_adapters
        >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
        ...                         depth=4, num_classes=0, global_pool="")
        >>> model = inject_uncertainty_adapters(vit, UncertaintyAdapterConfig(latent_dim=6))
        >>> model.num_blocks, model.embed_dim
        (4, 192)
        >>> model(torch.rand(2, 3, 32, 32), z=torch.randn(2, 4, 6)).shape  # K = 4: (B * K, N, D)
        torch.Size([8, 17, 192])
        >>> base = model.unload()  # the plain timm model again
    """

    def __init__(
        self,
        base_model: nn.Module,
        config: UncertaintyAdapterConfig,
        plan: InjectionPlan,
        freeze_backbone: bool = True,
    ) -> None:
        super().__init__()
        self.base_model = base_model
        self.config = config
        self.block_names = plan.block_names
        self.embed_dim = plan.embed_dim
        num_blocks = len(plan.block_names)
        self.condition = PositionCondition(plan.embed_dim, num_blocks) if config.uses_position else None
        self.adapters = nn.ModuleList(
            UncertaintyAdapter(plan.embed_dim, config, num_blocks, is_last=index == num_blocks - 1)
            for index in range(num_blocks)
        )
        self.recon = (
            LatentReconstruction(config.latent_dim, config.mlp_hidden_dim, plan.embed_dim)
            if config.uses_sample
            else None
        )
        reference = next(iter(base_model.get_submodule(plan.block_names[0]).parameters()), None)
        if reference is not None:
            dtype = reference.dtype if reference.is_floating_point() else None
            for module in self.adapter_modules():
                module.to(device=reference.device, dtype=dtype)
        self._frozen_flags = [param.requires_grad for param in base_model.parameters()]
        if freeze_backbone:
            base_model.requires_grad_(False)
        self._state = _ForwardState()
        self.batched_shifts = True
        self._checkpointing = False
        self._saved_forwards: list[Any] = []
        self._hook_handles = [
            base_model.get_submodule(name).register_forward_hook(
                functools.partial(self._after_block, index), prepend=True
            )
            for index, name in enumerate(plan.block_names)
        ]
        self._unloaded = False

    @property
    def num_blocks(self) -> int:
        return len(self.block_names)

    def adapter_modules(self) -> list[nn.Module]:
        """The trainable parts: condition (if any), the adapters, Recon (if any)."""
        return [m for m in (self.condition, self.adapters, self.recon) if m is not None]

    # -- forward ---------------------------------------------------------------------------
    def forward(self, *args: Any, z: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Run the backbone with the adapters.

        Args:
            *args, **kwargs: whatever the backbone's forward takes (pixel values, flags, ...).
            z: latent samples, (B, C) for one hypothesis per image, or (B, K, C) for K
                hypotheses per image (the output then has batch B * K, image-major). Required
                for interactions that read z ('cmsm', 'concat', 'sample'); for 'position' and
                'none' it is optional and only its K (if 3-D) is used.

        Returns:
            Whatever the backbone returns.
        """
        if self._unloaded:
            raise RuntimeError("this UncertaintyModel was unloaded; inject adapters again to use it")
        state = self._state
        if state.active:
            raise RuntimeError("UncertaintyModel.forward was called again while it was running")
        z_flat, hypotheses = self._prepare_z(z)
        state.active, state.z, state.hypotheses = True, z_flat, hypotheses
        try:
            output = self.base_model(*args, **kwargs)
            if state.next_block != self.num_blocks:
                raise RuntimeError(
                    f"only {state.next_block} of the {self.num_blocks} adapted blocks ran in the "
                    f"backbone's forward; the uncertainty adapters need every block to run"
                )
            return output
        finally:
            state.reset()

    def _prepare_z(self, z: torch.Tensor | None) -> tuple[torch.Tensor | None, int]:
        latent_dim = self.config.latent_dim
        if z is None:
            if self.config.uses_sample:
                raise ValueError(
                    f"interaction {self.config.interaction!r} needs a latent sample: pass z of "
                    f"shape (B, {latent_dim}) (e.g. LatentHeads(...)(images, masks).z in "
                    f"training, LatentHeads(...).sample(images, K) at inference)"
                )
            return None, 1
        if not isinstance(z, torch.Tensor) or z.dim() not in (2, 3) or z.shape[-1] != latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"z must have shape (B, {latent_dim}) or (B, K, {latent_dim}) for K hypotheses "
                f"per image, got {shape}"
            )
        hypotheses = z.shape[1] if z.dim() == 3 else 1
        z_flat = z.reshape(-1, latent_dim)
        dtype = self.adapters[0].up.weight.dtype
        return z_flat.to(dtype=dtype), hypotheses

    def _enter_block(self, index: int) -> _ForwardState:
        """Check that block ``index`` runs inside `forward` and in order; count it."""
        state = self._state
        if not state.active:
            raise RuntimeError(
                f"adapted block {self.block_names[index]!r} ran outside UncertaintyModel.forward. "
                f"Call the UncertaintyModel (not its base_model), or call unload() to get the "
                f"plain backbone back. The backbone's own activation checkpointing re-runs blocks "
                f"during backward and is not supported; disable it in the backbone and use "
                f"UncertaintyModel.gradient_checkpointing_enable() instead."
            )
        if index != state.next_block:
            raise RuntimeError(
                f"adapted block {index} ran when block {state.next_block} was expected; the "
                f"blocks must run once each, in order"
            )
        state.next_block = index + 1
        return state

    def _after_block(self, index: int, module: nn.Module, args: Any, output: Any) -> Any:
        if self._checkpointing:
            return None  # the block's checkpointed forward has applied the adapter already
        state = self._enter_block(index)
        output, state.shifts, state.layout = self._adapt(index, output, state.shifts, state.z, state.hypotheses, state.layout)
        return output

    def _checkpointed_block(self, index: int, block_forward: Any, *args: Any, **kwargs: Any) -> Any:
        """Block ``index``'s forward while checkpointing: the block and its adapter, recomputed
        together during backward from (shifts, z, the block's inputs)."""
        state = self._enter_block(index)
        hypotheses, layout = state.hypotheses, state.layout

        def block_and_adapter(shifts: torch.Tensor | None, z: torch.Tensor | None, *args: Any, **kwargs: Any) -> Any:
            return self._adapt(index, block_forward(*args, **kwargs), shifts, z, hypotheses, layout)

        if torch.is_grad_enabled():
            output, state.shifts, state.layout = checkpoint(
                block_and_adapter, state.shifts, state.z, *args, use_reentrant=False, **kwargs
            )
        else:
            output, state.shifts, state.layout = block_and_adapter(state.shifts, state.z, *args, **kwargs)
        return output

    def _adapt(
        self,
        index: int,
        output: Any,
        shifts: torch.Tensor | None,
        z: torch.Tensor | None,
        hypotheses: int,
        layout: tuple[int, ...] | None,
    ) -> tuple[Any, torch.Tensor | None, tuple[int, ...] | None]:
        """Block ``index``'s output (a tensor, or a tuple/list whose first item is the tokens)
        through adapter ``index`` (and, behind the last block, Recon).

        ``shifts`` (B, L, D) holds every adapter's per-sample term W_f f_i; block 0 computes it
        from p_0 and z (`adapter_shifts`: the position chain p_0 -> p_1 -> ... and the CMSM of
        all adapters in one pass) and later blocks read their row of it.

        Returns (output, shifts, the memory layout of block 0's tokens). A function of its
        arguments only, so that checkpointing can recompute it.
        """
        is_tuple = isinstance(output, (tuple, list))
        hidden = output[0] if is_tuple else output
        if index == 0:
            hidden, p, layout = self._start_chain(hidden, z, hypotheses)
            shifts = adapter_shifts(self.adapters, p, z, batched=self.batched_shifts)
        hidden, _ = self.adapters[index](hidden, None, None, shift=None if shifts is None else shifts[:, index])
        if index == self.num_blocks - 1:
            if self.recon is not None:
                hidden = self.recon(hidden, z)
            hidden = _with_memory_order(hidden, layout)
        if is_tuple:
            output = type(output)([hidden, *output[1:]]) if isinstance(output, list) else (hidden, *output[1:])
            return output, shifts, layout
        return hidden, shifts, layout

    def _start_chain(
        self, hidden: torch.Tensor, z: torch.Tensor | None, k: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
        """Block 0: p_0 from its output, then repeat both for K hypotheses per image.

        The tokens continue in row-major memory; the returned layout (block 0's own memory
        order) is restored behind the last block. segment-anything's tokens are a permuted view
        of its channels-first patch embedding: left so, every adapter matmul and residual add
        of the chain runs on strided memory (about half of the adapters' cost on a CPU).
        """
        batch = hidden.shape[0]
        if z is not None and z.shape[0] != batch * k:
            expected = f"({batch}, {self.config.latent_dim})" if k == 1 else f"({batch}, {k}, {self.config.latent_dim})"
            raise ValueError(
                f"z holds {z.shape[0] // k} images' samples but the backbone's batch is "
                f"{batch}; pass z of shape {expected}"
            )
        layout = _memory_order(hidden)
        hidden = hidden.contiguous()
        p = self.condition(hidden) if self.condition is not None else None
        if k > 1:
            hidden = hidden.repeat_interleave(k, dim=0)
            p = p.repeat_interleave(k, dim=0) if p is not None else None
        return hidden, p, layout

    # -- activation checkpointing ----------------------------------------------------------
    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether `gradient_checkpointing_enable` is in effect."""
        return self._checkpointing

    def gradient_checkpointing_enable(self) -> None:
        """Trade compute for memory in training: store only each block's inputs (tokens, p, z)
        and recompute the block with its adapter during backward (non-reentrant
        ``torch.utils.checkpoint``). Outputs and gradients are unchanged; one extra forward of
        the backbone per backward. No effect under ``torch.no_grad()``.

        Enable it here, not in the backbone (whose checkpointing is refused: see the module
        docstring)."""
        if self._unloaded:
            raise RuntimeError("this UncertaintyModel was unloaded; inject adapters again to use it")
        if self._checkpointing:
            return
        self._saved_forwards = []
        for index, name in enumerate(self.block_names):
            block = self.base_model.get_submodule(name)
            self._saved_forwards.append(block.__dict__.get("forward"))
            block.forward = functools.partial(self._checkpointed_block, index, block.forward)
        self._checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Store activations again (the default); restores the blocks' own forwards."""
        if not self._checkpointing:
            return
        for name, saved in zip(self.block_names, self._saved_forwards):
            block = self.base_model.get_submodule(name)
            if saved is None:
                del block.forward
            else:
                block.forward = saved
        self._saved_forwards = []
        self._checkpointing = False

    # -- user verbs ------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, each parameter counted once."""
        return parameter_counts(self)

    def print_trainable_parameters(self) -> None:
        """Print 'trainable params: X || all params: Y || trainable%: Z' (as PEFT does)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || "
            f"trainable%: {100 * trainable / max(total, 1):.4f}"
        )

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter weights only (no backbone), keyed 'condition.*', 'adapters.i.*', 'recon.*'."""
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith("base_model.")}

    def load_adapter_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "the given weights") -> None:
        """Copy adapter weights in, after checking names and shapes (strict)."""
        own = self.adapter_state_dict()
        ckpt.check_state_dict(own, tensors, source)
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(tensors[name])

    def adapter_metadata(self) -> dict[str, Any]:
        """What `save_adapters` writes to adapter_config.json (besides the weights' hash)."""
        from . import __version__

        return {
            "format_version": FORMAT_VERSION,
            "library": "uncertainty-adapters",
            "library_version": __version__,
            "backbone": type(self.base_model).__name__,
            "block_names": list(self.block_names),
            "embed_dim": self.embed_dim,
            "num_blocks": self.num_blocks,
            "config": self.config.to_dict(),
        }

    def save_adapters(self, path: str | Path, latent_heads: nn.Module | None = None) -> None:
        """Write ``path/adapter_config.json`` and ``path/adapter_model.safetensors`` (adapter
        weights only), and with ``latent_heads`` (a `LatentHeads`) also
        ``path/latent_heads.safetensors`` (prior and posterior nets), each atomically.

        adapter_config.json is written last and records the SHA-256 of every weights file (and
        the heads' constructor arguments under ``latent_heads``), so a folder holds either the
        old save or the new one. `load_adapters` reads the adapters; `load_latent_heads` the
        heads; `load_adapters_and_latent_heads` both.

        Raises:
            ValueError: the heads' latent dimension is not the adapters' ``config.latent_dim``.
        """
        if latent_heads is not None and latent_heads.latent_dim != self.config.latent_dim:
            raise ValueError(
                f"the latent heads draw z of dimension {latent_heads.latent_dim} but the adapters take "
                f"latent_dim={self.config.latent_dim}; save the heads trained with these adapters"
            )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {}
        if latent_heads is not None:
            record["latent_heads"] = dict(latent_heads.config)
            record["latent_heads_sha256"] = ckpt.save_tensors_atomic(
                path / ckpt.LATENT_HEADS_NAME, latent_heads.state_dict(), {"format": "pt"}
            )
        sha = ckpt.save_tensors_atomic(path / ckpt.WEIGHTS_NAME, self.adapter_state_dict(), {"format": "pt"})
        ckpt.write_json_atomic(path / ckpt.CONFIG_NAME, {**self.adapter_metadata(), "weights_sha256": sha, **record})

    def unload(self) -> nn.Module:
        """Remove the adapters and return the original backbone, with its parameters'
        ``requires_grad`` flags as they were before injection."""
        self.gradient_checkpointing_disable()
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []
        for param, flag in zip(self.base_model.parameters(), self._frozen_flags):
            param.requires_grad_(flag)
        self._unloaded = True
        return self.base_model

    def extra_repr(self) -> str:
        return (
            f"interaction={self.config.interaction!r}, latent_dim={self.config.latent_dim}, "
            f"blocks={self.num_blocks}, embed_dim={self.embed_dim}"
        )
