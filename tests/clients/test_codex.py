"""The Codex CLI (``@openai/codex`` 0.171.0, its native binary from the npm package) against
``responseloop serve``: ``codex exec --skip-git-repo-check`` with a throwaway ``CODEX_HOME``
whose custom model provider speaks ``wire_api = "responses"`` with a dummy key.

Its DEFAULT features declare a ``namespace`` tool and a hosted ``web_search`` tool, which
the server must accept; the same turns with those two features off are checked too, so the
rest of Codex's traffic is covered meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.clients import scripted_model
from tests.clients.checking_proxy import CheckingProxy
from tests.clients.conftest import NODE_DIR, require_node
from tests.loopback_upstream import Upstream

CODEX = NODE_DIR / "node_modules" / ".bin" / "codex"
NARROWED = 'web_search = "disabled"\n\n[features]\nmulti_agent = false\n'


@attrs.frozen
class Turn:
    status: int
    final_text: str
    stderr: str


@attrs.frozen
class Session:
    """Four ``codex exec`` runs in one CODEX_HOME, and what the upstream and proxy saw."""

    turns: dict[str, Turn]
    bodies: list[Any]
    requests: list[Any]
    problems: list[str]


SESSIONS: dict[str, Session] = {}


def codex_session(home: Path, proxy: CheckingProxy, upstream: Upstream, extra: str) -> Session:
    home.mkdir()
    work = home.parent / f"{home.name}-work"
    work.mkdir()
    (home / "config.toml").write_text(_config(proxy.url + "/v1", extra))
    env = {**os.environ, "CODEX_HOME": str(home), "RL_KEY": "dummy"}
    received, exchanged = len(upstream.received), len(proxy.exchanges)
    problems = len(proxy.problems)
    runs = {
        "plain": ["exec", "--skip-git-repo-check", "say hi"],
        "tool": ["exec", "--skip-git-repo-check", "-s", "read-only", "please run echo"],
        "remember": ["exec", "--skip-git-repo-check", "my word is codexword"],
        "resume": ["exec", "--skip-git-repo-check", "resume", "--last", "what is my word?"],
    }
    turns = {}
    for name, args in runs.items():
        # stdin closed: codex exec would otherwise wait to read more of the prompt.
        result = subprocess.run(
            [str(CODEX), *args],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        turns[name] = Turn(result.returncode, result.stdout.strip(), result.stderr[-3000:])
    return Session(
        turns,
        [r.json() for r in upstream.received[received:]],
        [e.body for e in proxy.exchanges[exchanged:] if e.method == "POST"],
        proxy.problems[problems:],
    )


def _config(base_url: str, extra: str) -> str:
    top, _, tables = extra.partition("\n\n")
    return f"""model = "m"
model_provider = "rl"
{top}

[model_providers.rl]
name = "responseloop"
base_url = "{base_url}"
wire_api = "responses"
env_key = "RL_KEY"
request_max_retries = 0
stream_max_retries = 0

{tables}"""


@pytest.fixture(params=["defaults", "narrowed"])
def session(
    request: pytest.FixtureRequest,
    session_proxy: CheckingProxy,
    clients_upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Session:
    require_node()
    if request.param not in SESSIONS:
        home = tmp_path_factory.mktemp("codex") / "home"
        extra = "" if request.param == "defaults" else NARROWED
        SESSIONS[request.param] = codex_session(home, session_proxy, clients_upstream, extra)
    return SESSIONS[request.param]


def ok(session: Session, name: str) -> Turn:
    turn = session.turns[name]
    assert turn.status == 0, turn.stderr
    return turn


def test_plain_turn(session: Session) -> None:
    assert ok(session, "plain").final_text == scripted_model.HELLO


def test_tool_turn_read_only(session: Session) -> None:
    turn = ok(session, "tool")
    # Codex ran its own exec_command once; the model saw its output and answered with it.
    calls = [b for b in session.bodies if b["messages"][-1]["role"] == "tool"]
    assert len(calls) == 1
    assert "codex-ran" in calls[0]["messages"][-1]["content"]
    assert turn.final_text.startswith("Result: ")
    assert "codex-ran" in turn.final_text
    assert not any("server_weather" in json.dumps(b["messages"]) for b in session.bodies)


def test_resumed_session(session: Session) -> None:
    ok(session, "remember")
    assert ok(session, "resume").final_text == "Your word is codexword."
    # The resumed run sent the earlier turn again (or referred to it): the model saw both.
    assert [m["content"] for m in session.bodies[-1]["messages"] if m["role"] == "user"][-2:] == [
        "my word is codexword",
        "what is my word?",
    ]


def test_everything_served_to_codex_passes_the_wire_checks(session: Session) -> None:
    assert not session.problems, "\n".join(session.problems)
