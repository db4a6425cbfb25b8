"""The page in a real headless browser (Debian's chromium, installed by .ci/run): upload, click,
drag, and what the page then shows; and that it asks nothing of any other host."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")


from benchmarks.app_browser import PageDriver, find_browser

from .conftest import RUN_SAMPLES

BLOB = (32, 24)  # the lesion's centre in the 80 x 48 test image (x, y)
SCALE = 7  # the page shows an 80-pixel-wide image 7 times enlarged (render.display_scale)


def _picture(x: float, y: float) -> tuple[float, float]:
    return (x + 0.5) * SCALE - 0.5, (y + 0.5) * SCALE - 0.5


@pytest.fixture(scope="module")
def page(server, lesion_png):
    if find_browser() is None:
        reason = "no chromium/chromedriver: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    driver = PageDriver(server[1])
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def clicked(page, lesion_png):
    """The page after an upload and one click on the lesion: (first message, second message)."""
    page.upload(lesion_png)
    first, _ = page.click(*_picture(*BLOB))
    return first


def test_a_click_on_the_page_shows_the_K_samples(clicked, page):
    assert f"{RUN_SAMPLES} samples for 1 foreground point" in clicked and page.thumbnails() == RUN_SAMPLES


def test_the_click_lands_on_the_image_pixel_under_the_mouse(clicked, page):
    assert page.prompt()["points"] == [[float(BLOB[0]), float(BLOB[1])]]


def test_the_page_shows_the_heat_map_and_the_numbers_of_summary_json(clicked, page):
    assert page.has_heat_map() and "uncertain_fraction" in page.summary_text()


def test_a_second_click_reuses_the_cached_embeddings(clicked, page):
    assert "Encoded the image" in clicked
    second, _ = page.click(*_picture(10, 10))
    assert "Decoded (cached embeddings)" in second and "2 foreground points" in second


def test_a_drag_on_the_page_draws_a_box(clicked, page):
    message, _ = page.drag(_picture(20, 14), _picture(44, 34))
    assert "box (20, 14, 44, 34)" in message and page.prompt()["box"] == [20.0, 14.0, 44.0, 34.0]


def test_the_page_asks_nothing_of_any_other_host(clicked, page, server):
    local = urlparse(server[1]).netloc
    remote = [url for url in page.requested_urls()
              if not url.startswith(("data:", "blob:")) and urlparse(url).netloc != local]
    assert page.requested_urls() and remote == []


def test_a_file_that_is_not_an_image_shows_a_message_on_the_page(page, clicked, tmp_path):
    bogus = tmp_path / "scan.png"
    bogus.write_text("not an image")
    page.reload()
    assert "not a readable image" in page.upload(bogus, expect="Cannot do that")
