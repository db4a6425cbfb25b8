"""The output folder of `ua-sam train` / `ua-sam demo`, and rebuilding a model from it.

    DIR/run.json                  what was trained: preset, SAM architecture, backbone, data, seed
    DIR/.ua-sam-output.json       marks the folder as written by ua-sam (output_dir.py)
    DIR/adapters/                 adapter_config.json + adapter_model.safetensors, and the prior and
                                  posterior nets in latent_heads.safetensors (not for interactions
                                  without a latent): save_adapters(dir, latent_heads=heads)
    DIR/latent_prompt.safetensors z's dense prompt of the mask decoder, only with --latent-prompt
    DIR/mask_decoder.safetensors  only with --train-decoder
    DIR/backbone.safetensors      the frozen SAM weights, when they are small (the demo backbone);
                                  otherwise run.json records the checkpoint path it was built from
                                  (``backbone`` null: a randomly initialised SAM, which a smoke run
                                  trains on; it is rebuilt from the run's seed as training drew it)

A Probabilistic U-Net run (the baseline, run.json "model": "prob-unet") holds run.json and
DIR/prob_unet.safetensors (every weight; its architecture is run.json's "prob_unet").

`ua-sam evaluate --checkpoint DIR` and `ua-sam predict --checkpoint DIR` read this folder, and
folders written before the heads moved into DIR/adapters/ (DIR/latent_heads.safetensors).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.pipeline.models.prob_unet import ProbabilisticUNet
from uncertainty_adapters.integrations.pipeline.models.protocol import TrainableSegmenter
from uncertainty_adapters.integrations.pipeline.training.seeding import seed_everything_for
from uncertainty_adapters.integrations.sam import UncertaintySam, build_uncertainty_sam

RUN_CONFIG = "run.json"
ADAPTERS = "adapters"
LEGACY_LATENT_HEADS = "latent_heads.safetensors"  # beside adapters/ in folders of earlier versions
MASK_DECODER = "mask_decoder.safetensors"
LATENT_PROMPT = "latent_prompt.safetensors"
BACKBONE = "backbone.safetensors"
PROB_UNET = "prob_unet.safetensors"
FORMAT_VERSION = 1


def save_run(directory: str | Path, model: TrainableSegmenter, meta: dict[str, Any]) -> None:
    """Write the trained parts of ``model`` and ``run.json`` (``meta`` plus model facts);
    ``meta["model"]`` names the kind of model ("ua-sam" when absent, or "prob-unet")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = meta.get("model", "ua-sam")
    facts = _PARTS[kind][0](directory, model, meta)
    _write_run_config(directory, {**meta, "model": kind, **facts})


def _save_ua_sam(directory: Path, model: UncertaintySam, meta: dict[str, Any]) -> dict[str, Any]:
    model.encoder.save_adapters(directory / ADAPTERS, latent_heads=model.latent_heads)
    if model.latent_prompt is not None:
        ckpt.save_tensors_atomic(directory / LATENT_PROMPT, model.latent_prompt.state_dict())
    if meta.get("train_decoder"):
        ckpt.save_tensors_atomic(directory / MASK_DECODER, model.mask_decoder.state_dict())
    return {"latent_heads": model.latent_heads.config if model.latent_heads is not None else None,
            "latent_prompt": model.latent_prompt is not None}


def _save_prob_unet(directory: Path, model: ProbabilisticUNet, meta: dict[str, Any]) -> dict[str, Any]:
    ckpt.save_tensors_atomic(directory / PROB_UNET, model.trainable_state_dict())
    return {"prob_unet": model.config}


def _write_run_config(directory: Path, meta: dict[str, Any]) -> None:
    ckpt.write_json_atomic(
        directory / RUN_CONFIG,
        {
            **meta,
            "format_version": FORMAT_VERSION,
            "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "library_version": ua.__version__,
        },
    )


def read_run_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / RUN_CONFIG).is_file():
        raise FileNotFoundError(
            f"{directory} is not a UA-SAM run folder (no {RUN_CONFIG}); pass the --out folder of "
            f"'ua-sam train' or 'ua-sam demo'"
        )
    meta = ckpt.read_json(directory / RUN_CONFIG)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ckpt.CheckpointMismatchError(
            f"{directory} was written by a newer uncertainty-adapters; upgrade the package to read it"
        )
    return meta


def backbone_path(directory: Path, meta: dict[str, Any]) -> Path | None:
    """The SAM weights the run was built on: DIR/backbone.safetensors, a recorded path, or None."""
    recorded = meta.get("backbone")
    if recorded is None:
        return None
    path = Path(recorded)
    path = path if path.is_absolute() else directory / path
    if not path.exists():
        raise FileNotFoundError(
            f"the run in {directory} was trained on the SAM weights {path}, which no longer exist; "
            f"put the file back (or edit 'backbone' in {directory / RUN_CONFIG})"
        )
    return path


def load_run(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TrainableSegmenter, dict[str, Any]]:
    """Rebuild the trained model of a run folder (UA-SAM, or the Probabilistic U-Net baseline),
    on ``device``, in eval mode."""
    directory = Path(directory)
    meta = read_run_config(directory)
    model = _PARTS[meta.get("model", "ua-sam")][1](directory, meta)
    return model.to(device).eval(), meta


@contextlib.contextmanager
def _as_trained(checkpoint: Path | None, meta: dict[str, Any]) -> Iterator[None]:
    """Around building a run's UA-SAM: with no SAM weights (``checkpoint`` None, a randomly
    initialised backbone), torch's generators seeded from the run's ``seed`` as training seeded them
    before building its model (the training loop's ``seed_everything_for(job.seed)``), so the frozen
    SAM is the one the adapters were trained on, and put back afterwards; with weights, nothing."""
    if checkpoint is not None:
        yield
        return
    with torch.random.fork_rng():
        seed_everything_for(int(meta.get("seed", 0)))
        yield


def _load_ua_sam(directory: Path, meta: dict[str, Any]) -> UncertaintySam:
    adapter_meta = ckpt.read_json(directory / ADAPTERS / ckpt.CONFIG_NAME)
    checkpoint = backbone_path(directory, meta)
    with _as_trained(checkpoint, meta):
        model = build_uncertainty_sam(
            meta["sam"],
            image_size=meta["image_size"],
            checkpoint=checkpoint,
            adapter_config=ua.UncertaintyAdapterConfig.from_dict(adapter_meta["config"]),
            train_decoder=bool(meta.get("train_decoder")),
            latent_heads_kwargs={k: v for k, v in (meta["latent_heads"] or {}).items() if k not in ("in_channels", "latent_dim")},
            attention=(meta.get("preset") or {}).get("attention"),  # the kernel the run trained with (same function)
            latent_prompt=bool(meta.get("latent_prompt")),  # run folders from before the option: False
        )
    if model.latent_heads is None:
        ua.load_adapters(model.encoder, directory / ADAPTERS)
    elif "latent_heads" in adapter_meta:  # saved with the adapters: save_adapters(dir, latent_heads=heads)
        _, heads = ua.load_adapters_and_latent_heads(model.encoder, directory / ADAPTERS)
        model.latent_heads.load_state_dict(heads.state_dict())
    else:  # a folder of an earlier version: the heads beside adapters/
        ua.load_adapters(model.encoder, directory / ADAPTERS)
        heads = ckpt.load_tensors(directory / LEGACY_LATENT_HEADS)
        ckpt.check_state_dict(model.latent_heads.state_dict(), heads, str(directory / LEGACY_LATENT_HEADS))
        model.latent_heads.load_state_dict(heads)
    if model.latent_prompt is not None:
        prompt = ckpt.load_tensors(directory / LATENT_PROMPT)
        ckpt.check_state_dict(model.latent_prompt.state_dict(), prompt, str(directory / LATENT_PROMPT))
        model.latent_prompt.load_state_dict(prompt)
    if meta.get("train_decoder"):
        decoder = ckpt.load_tensors(directory / MASK_DECODER)
        ckpt.check_state_dict(model.mask_decoder.state_dict(), decoder, str(directory / MASK_DECODER))
        model.mask_decoder.load_state_dict(decoder)
    return model


def _load_prob_unet(directory: Path, meta: dict[str, Any]) -> ProbabilisticUNet:
    model = ProbabilisticUNet(**meta["prob_unet"])
    model.load_trainable_state_dict(ckpt.load_tensors(directory / PROB_UNET), str(directory / PROB_UNET))
    return model


_PARTS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[Path, dict[str, Any]], Any]]] = {
    "ua-sam": (_save_ua_sam, _load_ua_sam),
    "prob-unet": (_save_prob_unet, _load_prob_unet),
}
"""How each kind of model (run.json's ``model``) writes and rebuilds its trained parts."""
