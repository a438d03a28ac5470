"""examples/durable.py runs, and its response survives the killed worker."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_durable_example_resumes_after_the_worker_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "responses.db"
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "durable.py"), "--db", str(db)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "first worker killed mid-tool (exit status -9)" in lines
    assert "resumed: model calls made after the restart: 1" in lines
    assert "resumed: tool calls made after the restart: 1" in lines
    assert lines[-1] == "final answer: It is sunny in Paris, 21 °C."
    with closing(sqlite3.connect(db)) as conn:
        states = conn.execute(
            "SELECT kind, state FROM responseloop_steps ORDER BY sequence"
        ).fetchall()
    assert states == [
        ("model_call", "completed"),
        ("tool_call", "completed"),
        ("model_call", "completed"),
    ]
