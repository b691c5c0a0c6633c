"""Every Python snippet of the README runs as written (in a fresh namespace, in a temporary
directory: the tour writes runs/tour)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_snippets():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)), ids=lambda i: BLOCKS[i].strip().splitlines()[-1][:40])
def test_readme_snippet_runs_as_written(i, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[i], f"README.md snippet {i}", "exec"), {"__name__": f"readme_{i}"})
