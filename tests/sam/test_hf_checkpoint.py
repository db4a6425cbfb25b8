"""Hugging Face transformers SAM folders (save_pretrained) load into segment-anything's modules:
the key mapping both ways, the architecture from config.json, the same outputs as transformers'
own forward, and the errors for what cannot load."""

from __future__ import annotations

import json

import pytest
import torch

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.sam import (
    SamSpec,
    build_sam,
    build_uncertainty_sam,
    hf_sam_spec,
    hf_to_sam_state_dict,
    load_sam_weights,
    read_sam_checkpoint,
    resolve_sam_checkpoint,
    sam_state_dict,
    sam_to_hf_state_dict,
)
from uncertainty_adapters.integrations.sam.checkpoint import resize_pos_embed
from uncertainty_adapters.integrations.sam.hf_checkpoint import TIED_POSITIONAL

from .conftest import TINY, images, save_hf_sam, trained_looking_sam

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "sam-tiny"
    return folder, save_hf_sam(folder, TINY, seed=5)


def _hf_state_dict(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k != TIED_POSITIONAL}


def _points():
    """Two images, two points each: (B, 1, 2, 2) pixel coordinates and (B, 1, 2) labels."""
    return torch.tensor([[[[10.0, 20.0], [30.0, 41.0]]], [[[50.0, 5.0], [3.0, 60.0]]]]), torch.tensor([[[1, 0]], [[1, 1]]])


@torch.no_grad()
def _sam_multimask(sam, pixels, points, labels):
    """segment-anything's forward on normalised pixels: (B, 3, s, s) mask logits, (B, 3) IoU."""
    embeddings = sam.image_encoder(pixels)
    masks, ious = [], []
    for i in range(pixels.shape[0]):
        sparse, dense = sam.prompt_encoder(points=(points[i, 0:1], labels[i, 0:1]), boxes=None, masks=None)
        mask, iou = sam.mask_decoder(embeddings[i : i + 1], sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
        masks.append(mask)
        ious.append(iou)
    return torch.cat(masks), torch.cat(ious)


def test_every_transformers_key_maps_onto_a_segment_anything_key_of_the_same_shape(hf_folder):
    converted = hf_to_sam_state_dict(hf_folder[1].state_dict())
    own = build_sam(TINY).state_dict()
    assert converted.keys() == own.keys()
    assert all(converted[k].shape == own[k].shape for k in own)


def test_mapping_round_trips_from_transformers(hf_folder):
    names = _hf_state_dict(hf_folder[1])
    back = sam_to_hf_state_dict(hf_to_sam_state_dict(names))
    assert back.keys() == names.keys() and all(back[k] is names[k] for k in names)


def test_mapping_round_trips_from_segment_anything():
    own = sam_state_dict(trained_looking_sam(seed=1))
    back = hf_to_sam_state_dict(sam_to_hf_state_dict(own))
    assert back.keys() == own.keys() and all(back[k] is own[k] for k in own)


def test_config_json_gives_the_architecture(hf_folder):
    assert hf_sam_spec(hf_folder[0]) == TINY


def test_converted_weights_compute_what_transformers_computes(hf_folder):
    folder, hf = hf_folder
    pixels = torch.randn(2, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(0))
    points, labels = _points()
    with torch.no_grad():
        expected = hf(pixel_values=pixels, input_points=points, input_labels=labels, multimask_output=True)
    for sdpa in (False, True):  # segment-anything's attention and this project's SDPA path
        sam = build_sam(hf_sam_spec(folder), sdpa_attention=sdpa)
        load_sam_weights(sam, folder)
        masks, ious = _sam_multimask(sam, pixels, points, labels)
        torch.testing.assert_close(masks, expected.pred_masks[:, 0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ious, expected.iou_scores[:, 0], rtol=1e-4, atol=1e-4)


def test_segment_anything_weights_mapped_to_transformers_names_compute_the_same(tmp_path):
    from transformers import SamModel

    from uncertainty_adapters.integrations.sam.hf_checkpoint import hf_sam_config

    sam = trained_looking_sam(seed=2)
    config = hf_sam_config(TINY)
    config._attn_implementation = "eager"
    hf = SamModel(config).eval()
    missing, unexpected = hf.load_state_dict(sam_to_hf_state_dict(sam_state_dict(sam)), strict=False)
    assert missing == [TIED_POSITIONAL] and unexpected == []
    pixels = images(2) * 2 - 1
    points, labels = _points()
    with torch.no_grad():
        expected = hf(pixel_values=pixels, input_points=points, input_labels=labels)
    masks, _ = _sam_multimask(sam, pixels, points, labels)
    torch.testing.assert_close(masks, expected.pred_masks[:, 0], rtol=1e-4, atol=1e-4)


def test_folder_loads_at_another_input_size(hf_folder):
    folder, hf = hf_folder
    model = build_uncertainty_sam("vit_b", image_size=96, checkpoint=folder)  # the folder's spec wins
    expected = resize_pos_embed(hf.vision_encoder.pos_embed.detach(), 12)
    assert torch.equal(model.image_encoder.pos_embed, expected)
    assert len(model.image_encoder.blocks) == TINY.encoder_depth


def test_tied_positional_embedding_is_read_when_it_is_the_only_copy(hf_folder):
    names = _hf_state_dict(hf_folder[1])
    names[TIED_POSITIONAL] = names.pop("shared_image_embedding.positional_embedding")
    converted = hf_to_sam_state_dict(names)
    assert converted["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] is names[TIED_POSITIONAL]


def test_keys_that_samodel_does_not_have_are_refused_by_name(hf_folder):
    names = {**_hf_state_dict(hf_folder[1]), "mask_decoder.hq_token.weight": torch.zeros(1, 32)}
    with pytest.raises(CheckpointMismatchError, match=r"not a transformers SamModel checkpoint.*mask_decoder\.hq_token"):
        hf_to_sam_state_dict(names)


def test_a_config_of_another_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam2"}))
    with pytest.raises(CheckpointMismatchError, match=r"'sam2' model, not a transformers SamModel"):
        read_sam_checkpoint(tmp_path)


def test_attention_heads_the_weights_do_not_show_must_match(hf_folder):
    other_heads = SamSpec(**{**TINY.to_dict(), "decoder_num_heads": 4})
    target = build_sam(other_heads)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"decoder_num_heads: checkpoint 2, model 4"):
        load_sam_weights(target, hf_folder[0])
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_a_folder_without_config_json_is_refused_with_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder without config.json.*save_pretrained"):
        resolve_sam_checkpoint(tmp_path)


def test_a_hub_name_without_a_local_copy_says_how_to_download_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no copy of the hub model facebook/sam-vit-base.*hf download facebook/sam-vit-base"):
        resolve_sam_checkpoint("facebook/sam-vit-base")


def test_a_hub_name_in_the_local_cache_resolves_to_its_snapshot(hf_folder, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "models--org--sam-tiny"
    shutil.copytree(hf_folder[0], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_sam_checkpoint("org/sam-tiny") == repo / "snapshots" / "abc123"
