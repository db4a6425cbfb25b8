"""MedSAM's released weights (medsam_vit_b.pth) are a segment-anything vit_b state dict saved with
torch.save: the same keys and shapes as sam_vit_b_01ec64.pth, so they load as SAM vit_b does."""

from __future__ import annotations

import torch

from uncertainty_adapters.integrations.sam import build_sam, build_uncertainty_sam, sam_state_dict


def test_a_medsam_vit_b_file_loads_into_uncertainty_sam_vit_b(tmp_path):
    with torch.device("meta"):
        layout = build_sam("vit_b", image_size=1024).state_dict()
    # Every tensor a different constant, so a tensor loaded into the wrong place shows; constants
    # survive the pos_embed / rel_pos resizing to the smaller input below. Expanded from one
    # element each, so the 90M-parameter file takes no time to write.
    values = {key: float(i) for i, key in enumerate(layout)}
    torch.save({key: torch.tensor(values[key]).expand(t.shape) for key, t in layout.items()}, tmp_path / "medsam_vit_b.pth")
    model = build_uncertainty_sam("vit_b", image_size=64, checkpoint=tmp_path / "medsam_vit_b.pth")
    loaded = sam_state_dict(model)
    assert loaded.keys() == layout.keys()
    assert all(loaded[key].flatten()[[0, -1]].eq(values[key]).all() for key in layout)
