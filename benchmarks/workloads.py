"""The workloads every benchmark times: built once per configuration, each a zero-argument callable.

A `BenchConfig` fixes the sizes; `Workloads(config)` builds the models lazily (a plain frozen SAM
and UA-SAM with the same SAM weights, adapters moved away from their identity init) and hands out
one callable per measured thing:

    encoder_forward(adapted)        SAM image encoder, no grad: plain, or with uncertainty adapters
    sampling(k, separate)           UA-SAM inference, K hypotheses per image: one batch, or K calls
    training_step(checkpointing)    UA-SAM: forward + ELBO + backward + Adam step
    graphed_training_step()         the same step recorded as one CUDA graph (eager on a CPU)
    latent_heads(resolution)        prior + posterior nets at `resolution` px (None: input size)

Every callable finishes its device work before returning (CUDA is synchronised), so that wall
time around a call is the cost of the call. Used by the pytest-benchmark suite
(test_throughput.py), overhead.py, speedups.py, gpu_check.py and tests/test_benchmarks_smoke.py.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline.training.graphed_step import GraphedTrainStep, capturable_adam
from uncertainty_adapters.integrations.sam import (
    SamSpec,
    UncertaintySam,
    build_sam,
    sample_point_prompts,
    use_attention,
)

Step = Callable[[], object]

# 64 x 64 inputs, patch 8: an 8 x 8 token grid with windows of 4 (the smoke test's size).
TINY_SPEC = SamSpec(
    encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    patch_size=8, window_size=4, prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4, image_size=64,
)


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and device of one benchmark run.

    Attributes:
        spec: SAM variant name or `SamSpec`.
        image_size: encoder input side S.
        batch: images per encoder forward and per training step.
        sample_batch: images per sampling call (each with K hypotheses).
        hypotheses: the K values of the sampling benchmark.
        latent_resolution: the latent heads' working resolution (UA-SAM's default 128).
        full_size: the paper's input side (1024), for what is measured at full size on the
            CPU too: the latent heads as the official code runs them, and the attention shapes
            of speedups.py's sdpa_paper_shapes.
        device: 'cpu' or 'cuda'.
        amp: bf16 autocast (the paper presets' mixed precision).
        sdpa_attention: SAM attention through scaled_dot_product_attention, or an attention kind
            of `use_attention` ("sdpa", "fused", "flex", "segment-anything").
        threads: torch CPU threads (None: leave torch's default).
    """

    spec: str | SamSpec = "vit_b"
    image_size: int = 224
    batch: int = 2
    sample_batch: int = 1
    hypotheses: tuple[int, ...] = (1, 4, 16)
    latent_resolution: int = 128
    full_size: int = 1024
    device: str = "cpu"
    amp: bool = False
    sdpa_attention: bool | str = True
    threads: int | None = 1

    def replace(self, **changes: object) -> "BenchConfig":
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["spec"] = self.spec if isinstance(self.spec, str) else "custom SamSpec"
        return data


# CPU sizes that finish in minutes; the paper's sizes on a GPU (UA_BENCH_GPU=1); the smoke test's.
CPU = BenchConfig()
GPU = BenchConfig(image_size=1024, batch=2, sample_batch=2, device="cuda", amp=True, threads=None)
TINY = BenchConfig(spec=TINY_SPEC, image_size=64, batch=2, sample_batch=1, hypotheses=(1, 4),
                   latent_resolution=32, full_size=64, threads=1)


def config_from_env() -> BenchConfig:
    """`GPU` when UA_BENCH_GPU=1, `TINY` when UA_BENCH_TINY=1, else `CPU`."""
    if os.environ.get("UA_BENCH_GPU") == "1":
        return GPU
    if os.environ.get("UA_BENCH_TINY") == "1":
        return TINY
    return CPU


def small_latent_heads(config: BenchConfig) -> dict[str, object] | None:
    """Smaller latent heads for the tiny spec (so the smoke test stays fast); None: the paper's."""
    return {"num_filters": (8, 16), "convs_per_block": 1} if config.spec is TINY_SPEC else None


def perturb_trainable(model: UncertaintySam, seed: int = 0, scale: float = 0.05) -> None:
    """Move adapters and latent heads away from their (identity) init, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.trainable_state_dict().values():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator) * scale
                tensor.add_(noise.to(device=tensor.device, dtype=tensor.dtype))


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Workloads:
    """Models and inputs of one `BenchConfig`, built on first use and kept."""

    def __init__(self, config: BenchConfig, seed: int = 0) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.seed = seed
        self._plain_sam = None
        self._ua_sam: UncertaintySam | None = None
        self._compiled: dict[tuple[bool, str], torch.nn.Module] = {}

    # -- models and inputs --------------------------------------------------------------------
    @property
    def plain_sam(self):
        """The frozen SAM, no adapters (eval mode)."""
        if self._plain_sam is None:
            torch.manual_seed(self.seed)
            sam = build_sam(self.config.spec, self.config.image_size, attention=_kind(self.config.sdpa_attention))
            self._plain_sam = sam.requires_grad_(False).to(self.device).eval()
        return self._plain_sam

    @property
    def ua_sam(self) -> UncertaintySam:
        """UA-SAM on the same SAM weights (paper adapter config), adapters perturbed. The SAM
        parameters are the plain model's own tensors, so that a plain-vs-adapted ratio does
        not depend on where each copy of the weights happens to sit in memory."""
        if self._ua_sam is None:
            heads = small_latent_heads(self.config)
            model = UncertaintySam(copy.deepcopy(self.plain_sam), latent_heads_kwargs=heads)
            perturb_trainable(model, self.seed)
            model = model.to(self.device).eval()
            plain = dict(self.plain_sam.named_parameters())
            for name, param in model.named_parameters():
                sam_name = name.replace("encoder.base_model.", "image_encoder.", 1)
                if sam_name in plain:
                    param.data = plain[sam_name].data
            self._ua_sam = model
        return self._ua_sam

    def images(self, batch: int, size: int | None = None) -> torch.Tensor:
        size = self.config.image_size if size is None else size
        generator = torch.Generator().manual_seed(self.seed + 1)
        return torch.rand(batch, 3, size, size, generator=generator).to(self.device)

    def masks(self, batch: int, size: int | None = None) -> torch.Tensor:
        """(batch, 1, S, S) discs, one per image."""
        size = self.config.image_size if size is None else size
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        radius = size / 6
        discs = [((yy - size / 2 + 3 * b) ** 2 + (xx - size / 2) ** 2 <= radius**2).float() for b in range(batch)]
        return torch.stack(discs)[:, None].to(self.device)

    def autocast(self, amp: bool | None = None):
        """bf16 autocast when ``amp`` (None: the config's ``amp``)."""
        if not (self.config.amp if amp is None else amp):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _finish(self, fn: Callable[[], object]) -> Step:
        device = self.device

        def step() -> object:
            result = fn()
            synchronize(device)
            return result

        return step

    # -- workloads -----------------------------------------------------------------------------
    def compiled_encoder(self, adapted: bool, mode: str) -> torch.nn.Module:
        """``torch.compile(encoder, mode=mode)`` of the plain or the UA-SAM image encoder, built once
        per (adapted, mode); it compiles on its first call."""
        key = (adapted, mode)
        if key not in self._compiled:
            encoder = self.ua_sam.encoder if adapted else self.plain_sam.image_encoder
            self._compiled[key] = torch.compile(encoder, mode=mode)
        return self._compiled[key]

    def encoder_forward(self, adapted: bool, batch: int | None = None, compile_mode: str | None = None) -> Step:
        """The image encoder on ``batch`` images, no grad: plain SAM, or UA-SAM's (one z each);
        eager, or under ``torch.compile(mode=compile_mode)`` (see `compiled_encoder`)."""
        batch = self.config.batch if batch is None else batch
        x = self.images(batch) * 2 - 1  # about SAM's normalised range
        if adapted:
            encoder = self.ua_sam.encoder if compile_mode is None else self.compiled_encoder(True, compile_mode)
            z = torch.randn(batch, self.ua_sam.config.latent_dim, generator=torch.Generator().manual_seed(2))
            z = z.to(self.device)

            def run() -> torch.Tensor:
                with torch.no_grad(), self.autocast():
                    return encoder(x, z=z)
        else:
            encoder = self.plain_sam.image_encoder if compile_mode is None else self.compiled_encoder(False, compile_mode)

            def run() -> torch.Tensor:
                with torch.no_grad(), self.autocast():
                    return encoder(x)

        return self._finish(run)

    def sampling(self, k: int, separate: bool = False, batch: int | None = None) -> Step:
        """UA-SAM inference with one point prompt per image: K hypotheses per image as one
        batched forward (block 0 once per image), or as K forwards of one hypothesis."""
        batch = self.config.sample_batch if batch is None else batch
        model, x = self.ua_sam, self.images(batch)
        prompts = sample_point_prompts(self.masks(batch), generator=torch.Generator().manual_seed(3))
        prompts = prompts.to(self.device)

        def run() -> torch.Tensor:
            with torch.no_grad(), self.autocast():
                if not separate:
                    return model(x, prompts, num_samples=k).logits
                return torch.cat([model(x, prompts, num_samples=1).logits for _ in range(k)], dim=1)

        return self._finish(run)

    def training_step(self, checkpointing: bool = False, batch: int | None = None, amp: bool | None = None) -> Step:
        """One UA-SAM training step: z ~ Q, forward, ELBO (DiceCE + KL), backward, Adam
        (bf16 autocast when ``amp``; None: the config's)."""
        batch = self.config.batch if batch is None else batch
        model = self.ua_sam
        x, masks = self.images(batch), self.masks(batch)
        prompts = sample_point_prompts(masks, generator=torch.Generator().manual_seed(4)).to(self.device)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        loss_fn = ua.ElboLoss(validate=False)
        encoder = model.encoder

        def run() -> torch.Tensor:
            if checkpointing:
                encoder.gradient_checkpointing_enable()
            model.train()
            try:
                with self.autocast(amp):
                    out = model(x, prompts, masks)
                    terms = loss_fn(out.logits.float(), masks, out.kl)
                terms.loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            finally:
                model.eval()
                encoder.gradient_checkpointing_disable()
            return terms.loss.detach()

        return self._finish(run)

    def graphed_training_step(self, batch: int | None = None, compile_mode: str | None = None) -> Step:
        """`training_step` (no checkpointing) recorded as one CUDA graph by `GraphedTrainStep`
        (capturable fused Adam; eager on a CPU), optionally with the image encoder under
        ``torch.compile(mode=compile_mode)`` inside the graph. The first call records."""
        batch = self.config.batch if batch is None else batch
        model = self.ua_sam
        x, masks = self.images(batch), self.masks(batch)
        prompts = sample_point_prompts(masks, generator=torch.Generator().manual_seed(4)).to(self.device)
        optimizer = capturable_adam([p for p in model.parameters() if p.requires_grad], 1e-6, self.device)
        loss_fn = ua.ElboLoss(validate=False)

        def terms(output, target):
            elbo = loss_fn(output.logits.float(), target, output.kl)
            return elbo.reconstruction, elbo.kl

        graphed = GraphedTrainStep(model, optimizer, terms, beta=1.0,
                                   autocast_dtype=torch.bfloat16 if self.config.amp else None)
        encoder = model.encoder if compile_mode is None else self.compiled_encoder(True, compile_mode)

        def run() -> torch.Tensor:
            eager = model.encoder
            model.encoder = encoder
            model.train()
            try:
                return graphed(x, prompts, masks)[0]
            finally:
                model.eval()
                model.encoder = eager

        return self._finish(run)

    def latent_heads(self, resolution: int | None, batch: int | None = None) -> Step:
        """Prior and posterior of the latent heads on ``full_size`` inputs, no grad,
        working at ``resolution`` px (None: at the input size, as the official code)."""
        batch = self.config.batch if batch is None else batch
        size = self.config.full_size
        kwargs = dict(small_latent_heads(self.config) or {})
        torch.manual_seed(self.seed)
        heads = ua.LatentHeads(in_channels=3, latent_dim=6, resolution=resolution, **kwargs).to(self.device).eval()
        x, masks = self.images(batch, size), self.masks(batch, size)

        def run() -> torch.Tensor:
            with torch.no_grad(), self.autocast():
                return heads(x, masks).kl

        return self._finish(run)

    def with_attention(self, sdpa: bool | str) -> None:
        """Switch both models' SAM attention (True: SDPA, False: segment-anything's own, or a kind
        of `use_attention`)."""
        use_attention(self.plain_sam, _kind(sdpa))
        use_attention(self.ua_sam, _kind(sdpa))

    def using_batched_shifts(self, batched: bool, step: Step) -> Step:
        """``step``, run with UA-SAM's per-sample adapter terms computed in one batched pass
        (``batched``, the default) or adapter by adapter (`UncertaintyModel.batched_shifts`)."""

        def run() -> object:
            encoder = self.ua_sam.encoder
            encoder.batched_shifts = batched
            try:
                return step()
            finally:
                encoder.batched_shifts = True

        return run

    def using_compiled_encoder(self, mode: str, step: Step) -> Step:
        """``step``, run with UA-SAM's image encoder swapped for `compiled_encoder` (as
        ``ua-sam train --compile`` runs it), the eager one put back afterwards."""

        def run() -> object:
            model = self.ua_sam
            eager = model.encoder
            model.encoder = self.compiled_encoder(True, mode)
            try:
                return step()
            finally:
                model.encoder = eager

        return run

    def using_attention(self, sdpa: bool | str, step: Step) -> Step:
        """``step``, run with SDPA (or segment-anything's, or another kind's) attention in both models."""

        def run() -> object:
            self.with_attention(sdpa)
            return step()

        return run


def _kind(sdpa: bool | str) -> str:
    """An attention kind of `use_attention` from a `BenchConfig.sdpa_attention` value."""
    if isinstance(sdpa, str):
        return sdpa
    return "sdpa" if sdpa else "segment-anything"
