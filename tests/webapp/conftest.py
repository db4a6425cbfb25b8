"""A small run folder and images for the app's tests (the predict tests' tiny 'demo' run), and
one app server per test module on a free port of 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..predict.conftest import make_run, one_thread, write_png  # noqa: F401  (one_thread: autouse)

RUN_SAMPLES = 3  # the eval_samples of make_run's preset


@pytest.fixture(scope="session")
def app_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("app") / "run")


@pytest.fixture(scope="session")
def lesion_png(tmp_path_factory) -> Path:
    return write_png(tmp_path_factory.mktemp("app-images") / "lesion.png")


@pytest.fixture(scope="module")
def server(app_run):
    """(Gradio Blocks, URL) of `ua-sam app` on the tiny run, closed after the module."""
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
    from uncertainty_adapters.integrations.app.server import serve

    page, url = serve(app_run, port=0)
    yield page, url
    page.close()
