"""docs/guide.md: its Python blocks run in order in one namespace, and the error messages its
troubleshooting section quotes are ones the library really raises."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
TEXT = GUIDE.read_text()


def test_guide_python_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__guide__"}
    for index, code in enumerate(blocks):
        exec(compile(code, f"{GUIDE}:block{index}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "cannot find the transformer blocks of TinyViT" in printed
    assert (tmp_path / "tiny-adapters" / "adapter_model.safetensors").is_file()


def test_troubleshooting_quotes_messages_the_library_raises():
    troubleshooting = TEXT.split("## 10. Troubleshooting", 1)[1]
    source = "".join(path.read_text() for path in (ROOT / "uncertainty_adapters").glob("*.py"))
    quoted = [
        fragment
        for heading in re.findall(r"^### (`.*)$", troubleshooting, flags=re.M)
        for fragment in re.findall(r"`([^`]+)`", heading)
    ]
    assert len(quoted) >= 15
    missing = [fragment for fragment in quoted if fragment not in source]
    assert not missing, f"the guide quotes messages the library does not raise: {missing}"
