"""`--save-samples`: one ``OUT/samples/<case_id>.npz`` per test image, to recompute any metric.

Each file holds, at the evaluation resolution (the model's S x S input):

- ``samples``: (N, S, S) bool, the N sampled masks (probability > 0.5);
- ``probs``: (N, S, S) float16, their foreground probabilities;
- ``raters``: (R, S, S) bool, the raters' masks.

``<case_id>`` is the data spec's case name (for ``folder:PATH``, the case folder's name; for
``lidc:PATH``, the pickle key; for ``synthetic``, ``synthetic-<index>``), with every character
other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``. Files are written
atomically (a reader sees the old file or the new one).

    import numpy as np, torch, uncertainty_adapters as ua
    case = np.load("OUT/samples/case-007.npz")
    ua.metrics.ged(torch.from_numpy(case["samples"])[None], torch.from_numpy(case["raters"])[None])
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch

from uncertainty_adapters import checkpoint as ckpt

SAMPLES_DIR = "samples"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def case_file_name(case_id: str) -> str:
    """The file name of a case: ``<case_id>.npz`` with unsafe characters replaced by ``_``."""
    name = _UNSAFE.sub("_", str(case_id))
    if name in ("", ".", ".."):
        raise ValueError(f"case id {case_id!r} cannot name a file; give the case a name with letters or digits")
    return f"{name}.npz"


def save_case_samples(folder: str | Path, case_id: str, probabilities: torch.Tensor, raters: torch.Tensor) -> Path:
    """Write ``folder/<case_id>.npz`` (module docstring) and return its path.

    Args:
        folder: the ``samples`` folder (created if missing).
        case_id: the case's name in its data spec.
        probabilities: (N, S, S) foreground probabilities of the N samples.
        raters: (R, S, S) binary rater masks.
    """
    if probabilities.dim() != 3 or raters.dim() != 3 or probabilities.shape[1:] != raters.shape[1:]:
        raise ValueError(
            f"expected probabilities (N, S, S) and raters (R, S, S) of one image, got "
            f"{tuple(probabilities.shape)} and {tuple(raters.shape)}"
        )
    probabilities = probabilities.detach().float().cpu()
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        samples=(probabilities > 0.5).numpy(),
        probs=probabilities.half().numpy(),
        raters=(raters.detach().cpu() > 0.5).numpy(),
    )
    path = Path(folder) / case_file_name(case_id)
    ckpt.atomic_write_bytes(path, buffer.getvalue())
    return path
