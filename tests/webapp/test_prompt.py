"""The prompt the page builds from clicks, and how it is written down."""

from __future__ import annotations

import json

import pytest

from uncertainty_adapters.integrations.app.prompt import Prompt, PromptError

SIZE = (48, 80)  # (H, W)


def test_a_click_adds_a_point_with_the_chosen_label():
    prompt = Prompt().add_click(None, (10.2, 20.7), 1, SIZE).add_click((30, 5), (30, 5), 0, SIZE)
    assert prompt.points == [[10.0, 21.0], [30.0, 5.0]] and prompt.labels == [1, 0] and prompt.box is None


def test_a_press_and_release_that_moved_draws_a_box_with_ordered_corners():
    prompt = Prompt([[1, 1]], [1]).add_click((40, 30), (20, 10), 1, SIZE)
    assert prompt.box == [20.0, 10.0, 40.0, 30.0] and prompt.points == [[1, 1]]


def test_a_new_box_replaces_the_old_one():
    prompt = Prompt(box=[0, 0, 5, 5]).add_click((10, 10), (30, 30), 1, SIZE)
    assert prompt.box == [10.0, 10.0, 30.0, 30.0]


def test_clicks_outside_the_image_are_clipped_to_its_edge():
    assert Prompt().add_click(None, (-3, 99), 1, SIZE).points == [[0.0, 47.0]]


def test_undo_removes_the_last_point_then_the_box():
    prompt = Prompt([[1, 1], [2, 2]], [1, 0], [0, 0, 9, 9])
    assert prompt.undo().points == [[1, 1]] and prompt.undo().undo().undo().is_empty


def test_the_prompt_text_round_trips_through_json():
    prompt = Prompt([[3.0, 4.0]], [0], [1.0, 2.0, 5.0, 6.0])
    assert Prompt.from_json(prompt.to_json()) == prompt


def test_empty_text_is_the_empty_prompt():
    assert Prompt.from_json("").is_empty and Prompt.from_json(None).is_empty


def test_labels_default_to_foreground():
    assert Prompt.from_json('{"points": [[1, 2], [3, 4]]}').labels == [1, 1]


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '{"points": [[1]]}', '{"points": [[1, 2]], "labels": [2]}',
                                  '{"box": [5, 5, 1, 1]}', '{"clicks": []}'])
def test_malformed_prompt_text_is_refused_with_the_expected_form(text):
    with pytest.raises(PromptError, match=r"points|label|box|JSON"):
        Prompt.from_json(text)


def test_a_single_foreground_point_is_recorded_as_predict_records_it():
    prompt = Prompt([[30.0, 24.0]], [1])
    assert prompt.summary() == {"type": "point", "point": [30.0, 24.0], "label": 1}
    assert prompt.predict_arguments() == ["--point", "30,24"]


def test_a_box_alone_is_recorded_as_predict_records_it():
    prompt = Prompt(box=[1.0, 2.0, 30.0, 40.0])
    assert prompt.summary() == {"type": "box", "box": [1.0, 2.0, 30.0, 40.0]}
    assert prompt.predict_arguments() == ["--box", "1,2,30,40"]


def test_points_that_predict_cannot_take_have_no_predict_command():
    prompt = Prompt([[1.0, 2.0], [3.0, 4.0]], [1, 0], [0.0, 0.0, 9.0, 9.0])
    assert prompt.predict_arguments() is None
    assert json.loads(json.dumps(prompt.summary())) == {
        "type": "points", "points": [[1.0, 2.0], [3.0, 4.0]], "labels": [1, 0], "box": [0.0, 0.0, 9.0, 9.0]}
