"""The whole UA-SAM training step (forward, ELBO, backward, optimizer step) as one CUDA graph.

At the paper's batch of 2 a training step launches thousands of small kernels and the GPU waits
on the host that launches them. `GraphedTrainStep` records the step once per input shape
(``torch.cuda.CUDAGraph``, PyTorch's "whole network capture") and replays it: one launch per
step. The recipe follows PyTorch's CUDA-graph notes:

- inputs are copied into static tensors that the graph reads; outputs are static tensors too;
- a few warm-up steps run on a side stream before capture (lazy state, cuBLAS workspaces);
  the trainable weights and the optimizer state are restored afterwards, so warm-up and capture
  leave no trace: the first replayed step is the run's first step;
- the optimizer must be capturable (its step count on the device), and its learning rate,
  beta and the posterior's share of noise on z are device tensors, so that StepLR and the KL
  and posterior-noise warm-ups change them between replays;
- autocast runs with its weight cache off (a cache would outlive the capture);
- random draws inside the step (z ~ Q): eager steps draw from the generator given with the
  step; a captured graph reads the default CUDA generator of its device (the one generator a
  graph follows without registration), so before each replay that generator alone is seeded
  with the given generator's seed; CPU and other generators are never touched.

A new input shape (e.g. a different number of prompt points) records a new graph, up to
``max_graphs``; beyond that the step runs eagerly. On a CPU there is nothing to capture and
the same object runs the step eagerly, so the trainer has one code path.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, Callable

import torch

from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.sam.prompts import Prompts
from uncertainty_adapters.latent_heads import DiagonalGaussian

logger = logging.getLogger(LOGGER_NAME)

StepInputs = tuple[torch.Tensor, Prompts, torch.Tensor]


def _signature(images: torch.Tensor, prompts: Prompts, mask: torch.Tensor) -> tuple:
    fields = (images, *prompts._fields(), mask)
    return tuple(None if t is None else (tuple(t.shape), t.dtype) for t in fields)


class GraphedTrainStep:
    """``step(images, prompts, mask, generator=None) -> (loss, reconstruction, kl)`` of a model and
    its optimizer, replayed from a CUDA graph on CUDA (eager on other devices).

    Args:
        model: the module to train (e.g. `UncertaintySam`), already on its device; called as
            ``model(images, prompts, masks=mask, generator=generator)``.
        optimizer: a ``torch.optim`` optimizer of ``model``'s trainable parameters, built with
            ``capturable=True`` and tensor learning rates on CUDA (see `capturable_adam`).
        reconstruction_and_kl: ``(output, mask) -> (reconstruction, kl)`` or
            ``(reconstruction, penalised_kl, kl)``, scalar tensors; the loss is
            ``reconstruction + beta * penalised_kl`` (``penalised_kl`` is ``kl`` unless given, e.g.
            under free bits, `ElboLoss.kl_terms`), and the step reports ``kl``.
        beta: the KL weight; change it with `set_beta` (a device tensor inside the graph).
        posterior_noise: whether the model is also called with ``posterior_noise=t`` (a warm-up of
            the posterior's noise, `UncertaintySam.forward`): t is a device tensor inside the
            graph, 1 until `set_posterior_noise` changes it. False: the model's own default.
        autocast_dtype: e.g. ``torch.bfloat16`` for mixed precision; None: float32.
        warmup_steps: eager steps on a side stream before each capture.
        max_graphs: how many input shapes get a graph of their own.

    Returns (per call): three 0-d tensors (loss, reconstruction, kl), detached; on CUDA they are
    fresh copies of the graph's outputs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        reconstruction_and_kl: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        beta: float = 1.0,
        posterior_noise: bool = False,
        autocast_dtype: torch.dtype | None = None,
        warmup_steps: int = 3,
        max_graphs: int = 4,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.terms = reconstruction_and_kl
        self.device = next(model.parameters()).device
        self.beta = torch.tensor(float(beta), device=self.device)
        self.posterior_noise = torch.ones((), device=self.device) if posterior_noise else None
        self.autocast_dtype = autocast_dtype
        self.warmup_steps = warmup_steps
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, StepInputs, tuple[torch.Tensor, ...]]] = {}
        self.graphed = self.device.type == "cuda"
        if self.graphed:
            _check_capturable(optimizer)

    def set_beta(self, beta: float | torch.Tensor) -> None:
        """The KL weight of the next steps (no re-capture); a tensor (GECO's) is copied on the device."""
        if torch.is_tensor(beta):
            self.beta.copy_(beta)
        else:
            self.beta.fill_(float(beta))

    def set_posterior_noise(self, share: float) -> None:
        """The share t in [0, 1] of the posterior's noise on z of the next steps (no re-capture)."""
        if self.posterior_noise is None:
            raise ValueError("this step was built without posterior_noise=True, so its model is called without "
                             "posterior_noise; build GraphedTrainStep(..., posterior_noise=True) to set it")
        self.posterior_noise.fill_(DiagonalGaussian.check_noise_scale(share))

    def __call__(
        self, images: torch.Tensor, prompts: Prompts, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        if not self.graphed:
            return tuple(t.detach() for t in self._step(images, prompts, mask, generator))
        key = _signature(images, prompts, mask)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                logger.warning("input shape %s has no CUDA graph (%d recorded); running it eagerly", key, len(self.graphs))
                return tuple(t.detach() for t in self._step(images, prompts, mask, generator))
            self.graphs[key] = self._capture(images, prompts, mask)
        if generator is not None:
            torch.cuda.default_generators[self.device.index or 0].manual_seed(generator.initial_seed())
        graph, (static_images, static_prompts, static_mask), outputs = self.graphs[key]
        static_images.copy_(images, non_blocking=True)
        for static, given in zip(static_prompts._fields(), prompts._fields()):
            if static is not None:
                static.copy_(given, non_blocking=True)
        static_mask.copy_(mask, non_blocking=True)
        graph.replay()
        return tuple(t.detach().clone() for t in outputs)

    # -- the step ------------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _step(
        self, images: torch.Tensor, prompts: Prompts, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        extra = {} if self.posterior_noise is None else {"posterior_noise": self.posterior_noise}
        with self._autocast():
            output = self.model(images, prompts, masks=mask, generator=generator, **extra)
        reconstruction, *penalised, kl = self.terms(output, mask)
        loss = reconstruction + self.beta * (penalised[0] if penalised else kl)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
        return loss, reconstruction, kl

    def _capture(self, images: torch.Tensor, prompts: Prompts, mask: torch.Tensor):
        """Warm up, record one step, and put weights and optimizer state back as they were."""
        static = (images.clone(), Prompts(*(None if t is None else t.clone() for t in prompts._fields())), mask.clone())
        saved = _snapshot(self.model, self.optimizer)
        rng = torch.cuda.get_rng_state(self.device)
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup_steps):
                    self._step(*static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._step(*static)
        finally:
            _restore(self.model, self.optimizer, saved)
            torch.cuda.set_rng_state(rng, self.device)
        logger.info("recorded a CUDA graph of the training step for inputs %s", _signature(images, prompts, mask))
        return graph, static, outputs


def capturable_adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam ready for `GraphedTrainStep` on ``device``: on CUDA, capturable, fused, and with its
    learning rates as device tensors (StepLR fills them in place); elsewhere a plain Adam.

    Args:
        params: parameters or parameter groups; a group's own ``lr`` becomes a tensor too.
        lr: the default learning rate.
    """
    params = list(params)
    if device.type != "cuda":
        return torch.optim.Adam(params, lr=lr)
    groups = [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]
    for group in groups:
        group["lr"] = torch.tensor(float(group.get("lr", lr)), device=device)
    return torch.optim.Adam(groups, lr=torch.tensor(float(lr), device=device), capturable=True, fused=True)


def _check_capturable(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        if not group.get("capturable", False):
            raise ValueError(
                "GraphedTrainStep needs a capturable optimizer on CUDA; build it with capturable_adam() "
                "or torch.optim.Adam(..., capturable=True, lr=torch.tensor(lr, device='cuda'))"
            )
        if not isinstance(group["lr"], torch.Tensor):
            raise ValueError("GraphedTrainStep needs tensor learning rates (a float lr is frozen into the graph)")


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    params = [p for p in model.parameters() if p.requires_grad]
    state = {id(p): {k: v.clone() for k, v in optimizer.state[p].items() if isinstance(v, torch.Tensor)}
             for p in params if p in optimizer.state}
    return {"params": [(p, p.detach().clone()) for p in params], "state": state}


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Copy the snapshot back into the same tensors (the graph reads those storages); optimizer
    state that warm-up created from nothing is zeroed, which is what a fresh state is."""
    with torch.no_grad():
        for param, value in saved["params"]:
            param.copy_(value)
            if param.grad is not None:
                param.grad.zero_()
        for param, values in optimizer.state.items():
            before = saved["state"].get(id(param), {})
            for key, tensor in values.items():
                if not isinstance(tensor, torch.Tensor):
                    continue
                if key in before:
                    tensor.copy_(before[key])
                else:
                    tensor.zero_()
