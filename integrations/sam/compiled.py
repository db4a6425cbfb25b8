"""UA-SAM's sampling under ``torch.compile``: the image encoder and its adapters compiled for
inference, by default with CUDA graphs (``mode="reduce-overhead"``).

Sampling N hypotheses of an image is one encoder forward of N latent samples (block 0 once per
image) and one decoder call. At small batches the eager encoder waits on kernel launches; a
compiled encoder replayed from a CUDA graph does not. The first call of each input shape pays the
compile (and the graph recording); `ua-sam evaluate --compile` and `ua-sam predict --compile` log
it. The encoder is compiled in place (``nn.Module.compile``): parameter names, checkpoints and
hooks stay as they are.

    compile_for_sampling(model)                      # model.encoder now runs compiled
    out = model(images, prompts, num_samples=16)     # first call compiles, later ones replay

Outputs of a CUDA-graph replay live in memory that the next replay reuses; callers that keep an
embedding across calls (the predictor does) clone it.
"""

from __future__ import annotations

import torch

from .model import UncertaintySam

SAMPLING_COMPILE_MODES = ("reduce-overhead", "default", "max-autotune")


def compile_for_sampling(model: UncertaintySam, mode: str = "reduce-overhead") -> UncertaintySam:
    """Compile ``model``'s image encoder (with its adapters) for sampling, in place.

    Args:
        model: an `UncertaintySam` on its device.
        mode: a ``torch.compile`` mode of `SAMPLING_COMPILE_MODES`; "reduce-overhead" records
            CUDA graphs on CUDA (on a CPU it compiles without them).

    Returns:
        ``model`` itself.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in SAMPLING_COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {', '.join(SAMPLING_COMPILE_MODES)}")
    model.encoder.compile(mode=mode, dynamic=False)
    return model


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether ``model``'s image encoder runs under ``torch.compile`` (see `compile_for_sampling`)."""
    encoder = getattr(model, "encoder", None)
    return getattr(encoder, "_compiled_call_impl", None) is not None
