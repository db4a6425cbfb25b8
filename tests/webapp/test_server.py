"""`ua-sam app` as a server: it starts on a free port, answers through its own API (the one
`gradio_client` uses), turns bad input into a message, stays on this machine, and stops cleanly."""

from __future__ import annotations

import json
import socket

import pytest

pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
from gradio_client import Client, handle_file  # noqa: E402

from uncertainty_adapters.integrations import cli  # noqa: E402
from uncertainty_adapters.integrations.app.server import free_port, host_warning, serve  # noqa: E402

from .conftest import RUN_SAMPLES  # noqa: E402

CLICK = json.dumps({"points": [[30, 20]], "labels": [1], "box": None})


def _segment(url: str, image, prompt: str = CLICK, samples: int = RUN_SAMPLES, checkpoint: str = "") -> tuple:
    client = Client(url, verbose=False, download_files=False)
    return client.predict(handle_file(str(image)), prompt, samples, 0, "default", None, checkpoint,
                          api_name="/segment")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_server_starts_on_a_free_port_and_stops_cleanly(app_run):
    port = free_port()
    page, url = serve(app_run, port=port)
    assert url.startswith(f"http://127.0.0.1:{port}") and _listening(port)
    page.close()
    assert not _listening(port)


def test_a_click_through_the_api_returns_K_masks(server, app_run, lesion_png):
    canvas, heat, thumbnails, summary, message = _segment(server[1], lesion_png, samples=4, checkpoint=str(app_run))
    assert len(thumbnails) == 4 and summary["samples"] == 4 and len(summary["foreground_area_px"]["per_sample"]) == 4
    assert canvas["path"].endswith(".png") and heat["path"].endswith(".png") and "4 samples" in message


def test_a_file_that_is_not_an_image_gives_a_message_and_the_server_keeps_serving(server, lesion_png, tmp_path):
    bogus = tmp_path / "scan.png"
    bogus.write_bytes(b"\x00not an image")
    *_, summary, message = _segment(server[1], bogus)
    assert summary is None and "not a readable image" in message
    assert _segment(server[1], lesion_png)[3]["samples"] == RUN_SAMPLES


def test_a_run_folder_that_does_not_exist_gives_a_message(server, lesion_png, tmp_path):
    *_, summary, message = _segment(server[1], lesion_png, checkpoint=str(tmp_path / "nowhere"))
    assert summary is None and "does not exist" in message


def test_a_malformed_prompt_gives_a_message(server, lesion_png):
    *_, summary, message = _segment(server[1], lesion_png, prompt="{[")
    assert summary is None and "not JSON" in message


def test_the_server_opens_no_connection_off_the_machine(app_run, lesion_png, monkeypatch):
    peers = []
    connect = socket.socket.connect

    def recording(self, address):
        peers.append(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    page, url = serve(app_run, port=0)
    try:
        _segment(url, lesion_png)
    finally:
        page.close()
    assert peers and all(str(peer[0]) in ("127.0.0.1", "::1", "localhost") for peer in peers if isinstance(peer, tuple))


def test_only_a_non_local_host_gets_a_warning():
    assert host_warning("127.0.0.1", "run") is None and host_warning("localhost", "run") is None
    assert "reachable from other machines" in host_warning("0.0.0.0", "run")


def test_the_command_refuses_a_missing_run_folder_before_serving(tmp_path, capsys):
    assert cli.main(["app", "--checkpoint", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "ua-sam app: error: checkpoint folder" in capsys.readouterr().err


def test_the_command_refuses_a_port_that_is_taken(app_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["app", "--checkpoint", str(app_run), "--port", str(taken.getsockname()[1])]) == 2
    assert "ua-sam app: error:" in capsys.readouterr().err
