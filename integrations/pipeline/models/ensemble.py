"""An ensemble of deterministic Adapter-SAMs: the classic non-latent way to get several masks.

M Adapter-SAMs (``interaction="none"``, trained from different seeds on the same data) each give
one mask per image; hypothesis k comes from member k mod M, so K = M gives one mask per member
and K > M cycles through the members again (repeating their masks, as a deterministic member
can do nothing else). It is a `Segmenter` (models/protocol.py), so `evaluate` scores it unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from uncertainty_adapters.integrations.pipeline.models.protocol import Segmenter, SegmenterOutput
from uncertainty_adapters.integrations.sam.prompts import Prompts
from uncertainty_adapters.model import parameter_counts


class AdapterEnsemble(nn.Module):
    """M trained models behind one ``forward(images, prompts, num_samples=K)``.

    Args:
        members: the trained models (all with the same image size).
    """

    def __init__(self, members: Sequence[Segmenter]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        sizes = {int(m.image_size) for m in members}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members must share one image size, got {sorted(sizes)}")
        self.members = nn.ModuleList(members)
        self.image_size = sizes.pop()

    @torch.no_grad()
    def forward(
        self,
        images: torch.Tensor,
        prompts: Prompts,
        masks: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> SegmenterOutput:
        """K hypotheses per image: hypothesis k is member (k mod M)'s.

        Returns:
            `SegmenterOutput` with logits (B, K, S, S); no KL, no z (there is no latent).
        """
        if masks is not None:
            raise ValueError("an AdapterEnsemble is evaluated only; train its members one by one")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        count = len(self.members)
        per_member = [len(range(m, num_samples, count)) for m in range(count)]
        outputs = [
            member(images, prompts, num_samples=n, generator=generator).logits if n else None
            for member, n in zip(self.members, per_member)
        ]
        order = [outputs[k % count][:, k // count] for k in range(num_samples)]
        return SegmenterOutput(torch.stack(order, dim=1), None, None)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) over all members, each parameter counted once (members may share
        their frozen backbone; each member's adapters train separately)."""
        return parameter_counts(self)
