"""Every code block of README.md and docs/ is checked: Python blocks run as printed, and every
`ua-sam` command line in a shell block is accepted by the CLI's own parser (the commands
themselves train for minutes, so CI checks that they still parse, not that they run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from uncertainty_adapters.integrations.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
SHELL_DOCS = [README, ROOT / "docs" / "guide.md", ROOT / "docs" / "results.md"]


def _ua_sam_lines() -> list[tuple[str, str]]:
    lines = []
    for doc in SHELL_DOCS:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("ua-sam ") and "..." not in line and "[" not in line:
                    lines.append((doc.name, line))
    return lines


COMMANDS = _ua_sam_lines()


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_the_docs_show_ua_sam_commands():
    shown = {line.split()[1] for _, line in COMMANDS}
    assert {"demo", "train", "evaluate", "predict", "reproduce"} <= shown


@pytest.mark.parametrize("doc,line", COMMANDS, ids=[f"{d}:{l.split()[1]}{i}" for i, (d, l) in enumerate(COMMANDS)])
def test_documented_command_lines_parse(doc, line):
    args = build_parser().parse_args(shlex.split(line)[1:])  # argparse exits (SystemExit) on an unknown option
    assert args.command == line.split()[1]


@pytest.mark.parametrize("doc", SHELL_DOCS, ids=lambda p: p.name)
def test_every_linked_image_and_document_exists(doc):
    targets = re.findall(r"\]\(([^)#\s]+)\)", doc.read_text())
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    missing = [t for t in local if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"
