"""Resumable training checkpoints: trainable weights, optimizer, scheduler and progress, atomically.

A checkpoint is a directory ``checkpoints/step-XXXXXXXX/`` holding

- ``trainable.safetensors``: the trainable weights only (adapters, latent heads, decoder if trained),
- ``optimizer.safetensors``: every tensor of the optimizer, scheduler and grad-scaler states,
- ``state.json``: the rest of those states (numbers, lists) with each tensor replaced by a
  reference into ``optimizer.safetensors``, plus the progress (epoch, step, best validation loss);
  the loop's states include the seed of its train/validation split (``{"split": {"seed": ...}}``),
  which a resumed run keeps.

It is written under a temporary name and renamed into place, then ``checkpoints/latest.json``
is atomically pointed at it, so an interruption at any moment leaves the previous checkpoint
usable. Randomness needs no saving: every training step reseeds from (seed, step, rank), and the
data order and rater choice are functions of (seed, epoch), so a resumed run repeats exactly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uncertainty_adapters import checkpoint as ckpt

LATEST = "latest.json"
_TENSOR = "__tensor__"


@dataclass
class Progress:
    """Where training stands: completed epochs/steps and early-stopping bookkeeping.

    ``best_rater_spread``: the raters' posterior spread (prior sigmas) measured with the best
    validation loss, the weights the run keeps (latent_hold.py); None before a validation, without
    a latent, or in a checkpoint written before it was recorded."""

    epoch: int = 0
    step: int = 0
    batches_into_epoch: int = 0
    best_val_loss: float | None = None
    epochs_without_improvement: int = 0
    best_rater_spread: float | None = None


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Replace each tensor in a nested dict/list structure by a reference; collect the tensors."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        if any(not isinstance(key, (str, int)) for key in obj):
            raise TypeError(f"cannot store a dict with keys of types {sorted({type(k).__name__ for k in obj})}")
        return {"__dict__": [[key, flatten_state(value, tensors, f"{prefix}.{key}")] for key, value in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "__list__" if isinstance(obj, list) else "__tuple__"
        return {kind: [flatten_state(value, tensors, f"{prefix}.{i}") for i, value in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training checkpoint (at {prefix or 'top level'})")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {key: unflatten_state(value, tensors) for key, value in obj["__dict__"]}
        if "__list__" in obj:
            return [unflatten_state(value, tensors) for value in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(unflatten_state(value, tensors) for value in obj["__tuple__"])
    return obj


def save_training_checkpoint(
    directory: str | Path,
    trainable: dict[str, torch.Tensor],
    states: dict[str, Any],
    progress: Progress,
    keep: int = 2,
) -> Path:
    """Write ``directory/step-XXXXXXXX`` and point ``latest.json`` at it; keep the newest ``keep``.

    Args:
        directory: the run's ``checkpoints`` folder.
        trainable: the trainable weights (name -> tensor).
        states: component states, e.g. {"optimizer": opt.state_dict(), "scheduler": ...}.
        progress: where training stands after the last completed step.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{progress.step:08d}"
    final = directory / name
    staging = directory / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = flatten_state(states, tensors)
        ckpt.save_tensors_atomic(staging / "trainable.safetensors", trainable)
        ckpt.save_tensors_atomic(staging / "optimizer.safetensors", tensors)
        ckpt.write_json_atomic(staging / "state.json", {"progress": asdict(progress), "states": skeleton})
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ckpt.write_json_atomic(directory / LATEST, {"checkpoint": name, "step": progress.step})
    old = sorted(p for p in directory.glob("step-*") if p.is_dir() and p.name != name)
    for stale in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


@dataclass
class TrainingCheckpoint:
    """A loaded checkpoint: the pieces to hand back to the model, optimizer and loop."""

    path: Path
    trainable: dict[str, torch.Tensor]
    states: dict[str, Any]
    progress: Progress


def recorded_split_seed(directory: str | Path, unrecorded: int) -> int | None:
    """The train/validation split's seed the latest checkpoint in ``directory`` records (its
    states' ``{"split": {"seed": ...}}``), ``unrecorded`` for a checkpoint written without one, or
    None when there is no checkpoint yet (CheckpointMismatchError for a broken ``latest.json``)."""
    target = _latest(Path(directory))
    if target is None:
        return None
    entries = dict(ckpt.read_json(target / "state.json")["states"]["__dict__"])  # the skeleton (`flatten_state`)
    return int(unflatten_state(entries["split"], {})["seed"]) if "split" in entries else unrecorded


def _latest(directory: Path) -> Path | None:
    """The checkpoint folder ``latest.json`` points at, or None when there is none yet; raises
    CheckpointMismatchError when it points at a folder that does not exist."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    target = directory / ckpt.read_json(pointer)["checkpoint"]
    if not target.is_dir():
        raise ckpt.CheckpointMismatchError(
            f"{pointer} points at {target.name}, which does not exist; the checkpoints folder was "
            f"edited by hand. Delete {pointer} to start over"
        )
    return target


def load_latest_checkpoint(directory: str | Path) -> TrainingCheckpoint | None:
    """The checkpoint ``latest.json`` points at, or None when there is none yet."""
    target = _latest(Path(directory))
    if target is None:
        return None
    meta = ckpt.read_json(target / "state.json")
    tensors = ckpt.load_tensors(target / "optimizer.safetensors")
    return TrainingCheckpoint(
        path=target,
        trainable=ckpt.load_tensors(target / "trainable.safetensors"),
        states=unflatten_state(meta["states"], tensors),
        progress=Progress(**meta["progress"]),
    )
