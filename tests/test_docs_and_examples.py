"""The README, the docs and the examples are run, so they cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)


# A block that is only a snippet include (``--8<-- "examples/x.py"``) shows an example that
# needs services (Redis, a worker, uvicorn); its own test runs it.
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"\n$')


def included(block: str) -> str | None:
    """The file a snippet-include block shows, or ``None`` for a block to run."""
    match = SNIPPET.match(block)
    return match.group("path") if match else None


def test_snippet_includes_name_examples_that_their_tests_run() -> None:
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    shown = [included(b) for p in PAGES for b in fenced(p, "python")]
    paths = [path for path in shown if path is not None]
    assert paths, "no page includes an example"
    for path in paths:
        assert (ROOT / path).is_file(), path
        assert Path(path).stem in tests, f"no test runs {path}"


def test_quickstart_runs_offline() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert "answer: It is 18 °C in Paris right now." in result.stdout
    assert result.stdout.count("completed") == 3


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b, id=f"{p.name}-{i}")
        for p in PAGES
        for i, b in enumerate(fenced(p, "python"))
        if included(b) is None
    ],
)
def test_python_blocks_in_the_docs_run(block: str) -> None:
    subprocess.run([sys.executable, "-c", block], check=True, timeout=60, cwd=ROOT)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = fenced(ROOT / "README.md", "sh")
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_docs_repeat_the_readme_commands() -> None:
    readme = set(fenced(ROOT / "README.md", "sh"))
    assert readme <= set(fenced(ROOT / "docs" / "index.md", "sh"))


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "queue_worker.py",
            ["status: 200", "answer: We have 42 units of A-1.", "stored: completed"],
        ),
        (
            "openai_client.py",
            ["status: completed", "answer: It is 18 °C in Paris.", "retrieved: True"],
        ),
    ],
)
def test_adapter_examples_run_offline(example: str, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    for line in expected:
        assert line in result.stdout
