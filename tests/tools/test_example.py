"""examples/tools.py runs offline and uses all four kinds of tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import responseloop

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools.py"


def test_the_tools_example_runs() -> None:
    pytest.importorskip(
        "mcp", reason="the MCP SDK is not installed: pip install 'responseloop[mcp]'"
    )
    src = str(Path(responseloop.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "alice may use: convert, greet, summariser, weather",
        "bob may use: convert",
        'Tool outputs: 69.8 | {"city": "Lisbon", "celsius": 21.0} | '
        'Sunny, mild Lisbon (6 words). | {"result": "Hello, Lisbon!"}',
    ]
