"""Prompts from masks: where the points and boxes fall, the fallbacks, SAM's coordinate convention."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.integrations.sam import (
    Prompts,
    box_prompts,
    build_sam,
    component_point_prompts,
    make_prompts,
    sample_point_prompts,
    segment,
)

from .conftest import TINY, disc_masks


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _at(masks, points):
    """Mask value under each (x, y) point: masks[b, 0, y, x]."""
    x, y = points[:, 0, 0].long(), points[:, 0, 1].long()
    return masks[torch.arange(masks.shape[0]), 0, y, x]


def test_point_prompts_lie_inside_the_mask_with_label_1():
    masks = disc_masks(4)
    for seed in range(20):
        prompts = sample_point_prompts(masks, generator=_gen(seed))
        assert prompts.points.shape == (4, 1, 2) and prompts.labels.tolist() == [[1]] * 4
        assert (_at(masks, prompts.points) == 1).all()


def test_point_prompts_cover_the_mask_uniformly():
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 2, 3] = mask[0, 0, 5, 6] = 1
    counts = torch.zeros(8, 8)
    batch = mask.expand(2000, -1, -1, -1)
    points = sample_point_prompts(batch, generator=_gen()).points[:, 0].long()
    counts.index_put_((points[:, 1], points[:, 0]), torch.ones(2000), accumulate=True)
    assert counts.sum() == counts[2, 3] + counts[5, 6]
    assert abs(counts[2, 3].item() - 1000) < 150


def test_empty_mask_falls_back_to_the_union_of_the_fallback_masks():
    masks = disc_masks(2)
    masks[1] = 0
    raters = torch.zeros(2, 3, *masks.shape[-2:])
    raters[1, 2, 10, 20] = 1  # only one rater marked one pixel
    prompts = sample_point_prompts(masks, generator=_gen(), fallback=raters)
    assert prompts.points[1, 0].tolist() == [20.0, 10.0]
    assert prompts.labels[:, 0].tolist() == [1, 1]


def test_empty_mask_and_empty_fallback_give_a_background_point_at_the_image_centre():
    masks = torch.zeros(1, 1, 64, 48)
    prompts = sample_point_prompts(masks, fallback=torch.zeros(1, 4, 64, 48))
    assert prompts.points[0, 0].tolist() == [23.5, 31.5]  # + SAM's 0.5 = (24, 32), the centre
    assert prompts.labels.tolist() == [[0]]


def test_prompts_are_reproducible_with_a_generator():
    masks = disc_masks(3)
    a, b = sample_point_prompts(masks, _gen(7)), sample_point_prompts(masks, _gen(7))
    assert torch.equal(a.points, b.points)


def test_box_without_jitter_is_the_tight_bounding_box():
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 5:10, 12:20] = 1
    boxes = box_prompts(masks, jitter=0).boxes
    assert boxes[0].tolist() == [12.0, 5.0, 19.0, 9.0]
    assert boxes[1].tolist() == [0.0, 0.0, 31.0, 31.0]  # empty mask: the whole image


def test_box_without_jitter_contains_the_mask():
    masks = disc_masks(4)
    boxes = box_prompts(masks, jitter=0).boxes
    for mask, (x0, y0, x1, y1) in zip(masks[:, 0], boxes.long().tolist()):
        inside = torch.zeros_like(mask)
        inside[y0 : y1 + 1, x0 : x1 + 1] = 1
        assert mask.sum() > 0 and torch.equal(mask * inside, mask)


def test_jittered_box_sides_move_by_at_most_jitter_times_the_box_size_and_stay_in_the_image():
    masks = disc_masks(4)
    exact = box_prompts(masks, jitter=0).boxes
    size = (exact[:, 2:] - exact[:, :2] + 1).repeat(1, 2)
    for seed in range(10):
        jittered = box_prompts(masks, jitter=0.2, generator=_gen(seed)).boxes
        assert ((jittered - exact).abs() <= 0.2 * size + 1e-5).all()
        assert (jittered >= 0).all() and (jittered <= TINY.image_size - 1).all()
        assert (jittered[:, :2] <= jittered[:, 2:]).all()


def test_point_and_box_mode_gives_both():
    prompts = make_prompts(disc_masks(2), "point+box", generator=_gen())
    assert prompts.points.shape == (2, 1, 2) and prompts.boxes.shape == (2, 4)


def test_unknown_prompt_mode_is_refused_with_the_known_modes():
    with pytest.raises(ValueError, match="'point', 'box', 'point\\+box'"):
        make_prompts(disc_masks(1), "scribble")


def test_repeat_interleave_repeats_each_image_k_times_in_a_row():
    prompts = make_prompts(disc_masks(2), "point+box", _gen())
    repeated = prompts.repeat_interleave(3)
    assert repeated.batch_size == 6
    for name in ("points", "labels", "boxes"):
        original = getattr(prompts, name)
        assert torch.equal(getattr(repeated, name), original.repeat_interleave(3, dim=0))
        assert torch.equal(getattr(repeated, name)[3], original[1])


def test_inconsistent_prompts_are_refused():
    with pytest.raises(ValueError, match="points and Prompts.labels go together"):
        Prompts(points=torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="2 prompt sets but Prompts.boxes has 3"):
        Prompts(points=torch.zeros(2, 1, 2), labels=torch.ones(2, 1), boxes=torch.zeros(3, 4))


def test_point_at_integer_x_y_names_pixel_row_y_column_x_in_sams_prompt_encoder():
    # With a prompt encoder whose input frame equals its embedding grid, pixel [y, x] is token
    # [y, x]; SAM's dense positional encoding samples token centres, SAM's point encoding adds
    # 0.5 to the given coordinates: the two agree exactly when points are (column, row) indices.
    sam = build_sam(TINY)
    encoder = sam.prompt_encoder
    grid = encoder.image_embedding_size
    encoder.input_image_size = grid
    mask = torch.zeros(1, 1, *grid)
    mask[0, 0, 2, 5] = 1
    prompts = sample_point_prompts(mask)
    with torch.no_grad():
        sparse, _ = encoder(points=(prompts.points, prompts.labels), boxes=None, masks=None)
        dense_pe = encoder.get_dense_pe()[0, :, 2, 5]
    torch.testing.assert_close(sparse[0, 0] - encoder.point_embeddings[1].weight[0], dense_pe)


def _two_blobs_and_a_speck() -> torch.Tensor:
    """(1, 1, 16, 16): a 3 x 3 blob, a 4 x 4 blob and a one-pixel speck."""
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 2:5, 2:5] = 1
    mask[0, 0, 10:14, 10:14] = 1
    mask[0, 0, 0, 15] = 1
    return mask


def test_component_points_click_every_component_largest_first():
    prompts = component_point_prompts(_two_blobs_and_a_speck(), generator=_gen())
    (first, second) = prompts.points[0].long().tolist()
    assert prompts.labels.tolist() == [[1, 1]]
    assert 10 <= first[0] < 14 and 10 <= first[1] < 14  # the 4 x 4 blob
    assert 2 <= second[0] < 5 and 2 <= second[1] < 5  # the 3 x 3 blob


def test_component_points_keep_specks_below_min_area_only_when_alone():
    speck = torch.zeros(1, 1, 8, 8)
    speck[0, 0, 3, 4] = 1
    prompts = component_point_prompts(speck, generator=_gen())
    assert prompts.points.tolist() == [[[4.0, 3.0]]] and prompts.labels.tolist() == [[1]]


def test_component_points_join_diagonal_neighbours_into_one_component():
    diagonal = torch.zeros(1, 1, 8, 8)
    for k in range(5):
        diagonal[0, 0, k, k] = 1
    assert component_point_prompts(diagonal, generator=_gen()).labels.tolist() == [[1]]


def test_component_points_pad_smaller_sets_with_not_a_point_labels():
    one_blob = torch.zeros(1, 1, 16, 16)
    one_blob[0, 0, 5:9, 5:9] = 1
    prompts = component_point_prompts(torch.cat([_two_blobs_and_a_speck(), one_blob]), generator=_gen())
    assert prompts.points.shape == (2, 2, 2)
    assert prompts.labels.tolist() == [[1, 1], [1, -1]]


def test_component_points_stop_at_max_points():
    dots = torch.zeros(1, 1, 32, 32)
    dots[0, 0, 2:30:4, 2:30:4] = 1  # 7 x 7 separate pixels
    prompts = component_point_prompts(dots, generator=_gen(), max_points=3, min_area=1)
    assert prompts.labels.tolist() == [[1, 1, 1]]


def test_component_points_fall_back_to_the_union_then_to_the_centre():
    empty = torch.zeros(2, 1, 9, 9)
    raters = torch.zeros(2, 3, 9, 9)
    raters[0, 1, 1:3, 6:8] = 1
    prompts = component_point_prompts(empty, generator=_gen(), fallback=raters)
    x, y = prompts.points[0, 0].long().tolist()
    assert raters[0, 1, y, x] == 1 and prompts.labels[0].tolist() == [1]
    assert prompts.points[1, 0].tolist() == [4.0, 4.0] and prompts.labels[1].tolist() == [0]


def test_component_points_fall_uniformly_within_a_component():
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 2:4, 2:4] = 1
    seen = {tuple(component_point_prompts(mask, generator=_gen(seed)).points[0, 0].tolist()) for seed in range(60)}
    assert seen == {(2.0, 2.0), (3.0, 2.0), (2.0, 3.0), (3.0, 3.0)}


def test_make_prompts_component_points_mode_decodes_with_sam():
    masks = disc_masks(2)
    prompts = make_prompts(masks, "component-points", generator=_gen())
    assert prompts.points.shape == (2, 1, 2) and prompts.boxes is None
    sam = build_sam(TINY, image_size=masks.shape[-1])
    assert segment(sam, torch.rand(2, 3, *masks.shape[-2:]), prompts.points, prompts.labels).shape == (2, 1, *masks.shape[-2:])


def test_component_points_reject_a_non_positive_max_points():
    with pytest.raises(ValueError, match="max_points"):
        component_point_prompts(disc_masks(1), max_points=0)
