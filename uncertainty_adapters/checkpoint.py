"""Writing and reading weights and configs safely: safetensors + JSON, atomically.

A file is first written next to its destination under a temporary name, flushed to disk, then
moved over the destination with `os.replace`, so a crash leaves either the old file or the new
one, never half of one. Loading compares names and shapes before touching any tensor and says
exactly what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
LATENT_HEADS_NAME = "latent_heads.safetensors"


class CheckpointMismatchError(ValueError):
    """Saved weights or config do not fit the model they are loaded into.

    Raised by `load_adapters` (and `UncertaintyModel.load_adapter_state_dict`) before any weight
    is changed; the message names what differs: the blocks, the embedding width, the
    configuration fields, the missing, unexpected or wrongly shaped tensors, or a weights file
    that does not belong to its adapter_config.json. A subclass of ValueError.

    Example:
        >>> import uncertainty_adapters as ua
        >>> try:  # doctest: +SKIP
        ...     model = ua.load_adapters(backbone, "run/adapters")
        ... except ua.CheckpointMismatchError as error:
        ...     print(error)
        the adapters in run/adapters do not fit this model: number of blocks: saved 12, model 4
    """


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointMismatchError(f"{path} is not valid JSON ({error}); the file is damaged") from error


def tensors_to_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise tensors (moved to CPU, made contiguous) in the safetensors format.

    The same tensors and metadata always give the same bytes (so a file's SHA-256 names its
    content): safetensors writes the metadata in a hash map's order, which changes from call to
    call; here its keys are sorted.
    """
    cpu = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    return _sorted_metadata(save(cpu, metadata=dict(metadata) if metadata else None))


def _sorted_metadata(data: bytes) -> bytes:
    """The safetensors bytes with the header's ``__metadata__`` keys in sorted order (same
    header length: only the order of its entries changes)."""
    length = int.from_bytes(data[:8], "little")
    header = data[8:8 + length]
    compact = header.rstrip(b" ")
    parsed = json.loads(compact)
    if "__metadata__" not in parsed:
        return data
    parsed["__metadata__"] = dict(sorted(parsed["__metadata__"].items()))
    ordered = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
    if len(ordered) != len(compact):  # another serialiser's spacing: leave the bytes as they are
        return data
    return data[:8] + ordered + header[len(compact):] + data[8 + length:]


def save_tensors_atomic(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> str:
    """Atomically write a safetensors file; returns the SHA-256 of its bytes."""
    data = tensors_to_bytes(tensors, metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return load_file(str(path), device=str(device))


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise CheckpointMismatchError naming missing, unexpected and wrongly shaped tensors."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = [
        f"{name}: file {tuple(found[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in sorted(set(expected) & set(found))
        if tuple(found[name].shape) != tuple(expected[name].shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong_shape)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    raise CheckpointMismatchError(f"{source} does not match the model ({'; '.join(problems)})")
