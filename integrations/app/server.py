"""`ua-sam app`: serve the page of `page.build_page` on this machine.

    ua-sam app --checkpoint DIR [--host 127.0.0.1] [--port 7860] [--cpu]

Nothing leaves the machine: the server binds to 127.0.0.1 unless told otherwise (another
--host prints a warning, and the page then cannot switch run folders), Gradio's analytics and
version check are off, no share link is made, and the theme's fonts are files of the Gradio
package (no font or script comes from another host). Gradio is the optional extra ``app``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from uncertainty_adapters.integrations.pipeline.runtime import choose_device

__all__ = ["LOCAL_HOSTS", "MAX_UPLOAD", "add_app_parser", "free_port", "host_warning", "run_app", "serve"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD = "300mb"
INSTALL_HINT = 'pip install "uncertainty-adapters[app]"'


def add_app_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``app`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "app",
        help="A local web page: upload an image, click, see K plausible masks and their uncertainty.",
        description="Serve a web page on this machine for a trained UA-SAM run: upload an image "
        "(PNG/JPEG, DICOM, NIfTI), click points or drag a box, and see the mean-mask contour, the "
        "uncertainty heat map, the K sampled masks and the numbers of summary.json; 'Download' "
        "gives the files of 'ua-sam predict'. Needs the app extra: " + INSTALL_HINT + ".",
    )
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="The --out folder of 'ua-sam train' or 'ua-sam demo'.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address to listen on (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=7860, help="Port (default 7860; 0: any free port).")
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    return parser


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at ``host`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def host_warning(host: str, checkpoint: str | Path) -> str | None:
    """What to tell the user about listening on ``host``: None for this machine only."""
    if host in LOCAL_HOSTS:
        return None
    return (f"--host {host} makes the page reachable from other machines: anyone who reaches it can "
            f"upload images and run the model (the run folder is fixed to {checkpoint}); use the default "
            f"127.0.0.1 for this machine only")


def _require_gradio() -> None:
    if importlib.util.find_spec("gradio") is None:
        raise ModuleNotFoundError(f"ua-sam app needs Gradio, which is not installed: {INSTALL_HINT}")


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 7860, device: str | torch.device = "cpu",
          block: bool = False) -> tuple[Any, str]:
    """Load the run in ``checkpoint``, start the page, and return (Gradio Blocks, local URL).

    With ``block`` the call serves until interrupted; otherwise the server runs in a thread
    until ``blocks.close()``.

    Raises:
        FileNotFoundError, CheckpointMismatchError: the run folder (before anything listens).
        OSError: the port is taken.
        ModuleNotFoundError: Gradio is missing (the message names the install command).
    """
    _require_gradio()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    from .page import build_page, page_js
    from .session import Segmenter

    local = host in LOCAL_HOSTS
    warning = host_warning(host, checkpoint)
    if warning:
        print(f"ua-sam app: warning: {warning}", file=sys.stderr)
    port = free_port(host) if port == 0 else port
    segmenter = Segmenter(device=device)
    page = build_page(segmenter, checkpoint, checkpoint_editable=local)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    page.queue(default_concurrency_limit=1)
    _, url, _ = page.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True, quiet=True,
        max_file_size=MAX_UPLOAD, theme=theme, js=page_js(), ssr_mode=False, pwa=False, mcp_server=False,
        enable_monitoring=False, footer_links=[],
    )
    print(f"ua-sam app: serving {Path(checkpoint)} at http://{'[' + host + ']' if ':' in host else host}:{port} "
          f"(Ctrl+C stops it)", file=sys.stderr)
    if block:
        try:
            page.block_thread()
        finally:
            page.close()
    return page, url


def run_app(args: argparse.Namespace) -> None:
    """Carry out ``ua-sam app`` (serves until Ctrl+C)."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    device = str(choose_device(args.cpu))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests to the local server
    serve(args.checkpoint, args.host, args.port, device=device, block=True)
