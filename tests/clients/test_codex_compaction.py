"""The Codex CLI (0.171.0) compacting remotely against ``responseloop serve``.

Codex compacts on the server only for a provider named ``OpenAI`` (exactly; a lowercase
``openai`` gets its local summarising compaction instead) or Azure. So the throwaway
``CODEX_HOME`` names its provider ``OpenAI`` and sets a low
``model_auto_compact_token_limit``: the scripted upstream counts each word as a token, so
Codex's own instructions pass the limit on the first call. Two runs, one session:

- ``codex exec "my word is lemon; run echo"``: the model calls ``exec_command``;
  with the limit passed and a follow-up due, Codex compacts mid-turn, then continues from
  the compaction item it got back;
- ``codex exec resume --last "what is my word?"``: Codex compacts before the turn, then
  asks with the new compaction item.

Each compaction is remote compaction v2: a normal streamed ``POST /v1/responses`` with the
tools, ``{"type": "compaction_trigger"}`` last, and ``x-codex-beta-features:
remote_compaction_v2``. Codex 0.171 has no v1 (``POST /responses/compact``) any more: its
``[features] remote_compaction_v2`` is listed as removed and turning it off changes
nothing, so the v1 route is exercised by the openai client (tests/clients/
test_compaction.py) and the Agents SDK, not by Codex.

This serve seals with a fixed secret so that the bodies captured from it
(tests/data/codex/compaction/) replay against an in-process service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from tests.asgi.serving import subprocess_env
from tests.clients import scripted_model
from tests.clients.checking_proxy import CheckingProxy, Exchange, checking_proxy
from tests.clients.conftest import require_node
from tests.clients.test_codex import CODEX
from tests.loopback_upstream import Upstream

SEALING_SECRET = "codex-compaction-capture"
"""The secret the capturing serve sealed tests/data/codex/compaction/ under."""

RUNS = {
    "tool": ["exec", "--skip-git-repo-check", "-s", "read-only", "my word is lemon; run echo"],
    "resume": ["exec", "--skip-git-repo-check", "resume", "--last", "what is my word?"],
}


@attrs.frozen
class Run:
    status: int
    final_text: str
    stderr: str


@attrs.frozen
class CompactingSession:
    runs: dict[str, Run]
    exchanges: list[Exchange]
    upstream_bodies: list[Any]
    problems: list[str]

    @property
    def posts(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST"]

    @property
    def triggers(self) -> list[int]:
        """The indices in :attr:`posts` of the requests asking for a compaction."""
        return [i for i, e in enumerate(self.posts) if _is_trigger(e.body)]


def _is_trigger(body: Any) -> bool:
    return isinstance(body, dict) and body["input"][-1] == {"type": "compaction_trigger"}


def _config(base_url: str) -> str:
    return f"""model = "m"
model_provider = "rl"
model_auto_compact_token_limit = 300
web_search = "disabled"

[model_providers.rl]
name = "OpenAI"
base_url = "{base_url}"
wire_api = "responses"
env_key = "RL_KEY"
request_max_retries = 0
stream_max_retries = 0

[features]
multi_agent = false
"""


@pytest.fixture(scope="module")
def sealing_serve(
    clients_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``responseloop serve`` over the scripted upstream, sealing with
    :data:`SEALING_SECRET`; its base URL."""
    log = tmp_path_factory.mktemp("serve-sealing") / "serve.log"
    command = [
        sys.executable, "-m", "responseloop", "serve", "--port", "0", "--log-level", "warning",
        "--upstream", clients_upstream.url + "/v1", "--reasoning-key-env", "RL_SEALING",
    ]  # fmt: skip
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            command,
            env=subprocess_env({"RL_SEALING": SEALING_SECRET}),
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("responseloop serving on http://127.0.0.1:"), log.read_text()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def session(
    sealing_serve: str, clients_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CompactingSession]:
    require_node()
    root = tmp_path_factory.mktemp("codex-compaction")
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    with checking_proxy(sealing_serve) as proxy:
        (home / "config.toml").write_text(_config(proxy.url + "/v1"))
        yield _run(proxy, clients_upstream, home, work)


def _run(proxy: CheckingProxy, upstream: Upstream, home: Path, work: Path) -> CompactingSession:
    env = {**os.environ, "CODEX_HOME": str(home), "RL_KEY": "dummy"}
    received = len(upstream.received)
    runs = {}
    for name, args in RUNS.items():
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
        runs[name] = Run(result.returncode, result.stdout.strip(), result.stderr[-3000:])
    session = CompactingSession(
        runs,
        list(proxy.exchanges),
        [r.json() for r in upstream.received[received:]],
        list(proxy.problems),
    )
    capture = os.environ.get("RESPONSELOOP_CAPTURE_CODEX_COMPACTION")
    if capture:
        _capture(session, Path(capture), home=home, work=work)
    return session


def _capture(session: CompactingSession, into: Path, *, home: Path, work: Path) -> None:
    """Write the mid-turn trigger and the request after it, scrubbed as
    tests/data/codex/README.md says (paths and the installation id; the sealed blob is
    left as sent)."""
    into.mkdir(parents=True, exist_ok=True)
    first = session.triggers[0]
    for name, exchange in (
        ("trigger", session.posts[first]),
        ("compacted", session.posts[first + 1]),
    ):
        text = json.dumps(exchange.body, indent=2)
        text = text.replace(str(work), "/workspace/project").replace(str(home), "/home/user/.codex")
        installation = (home / "installation_id").read_text().strip()
        text = text.replace(installation, "00000000-0000-0000-0000-000000000000")
        (into / f"{name}.json").write_text(text + "\n")


def ok(session: CompactingSession, name: str) -> Run:
    run = session.runs[name]
    assert run.status == 0, run.stderr
    return run


def compaction_items(exchange: Exchange) -> list[Any]:
    """The ``compaction`` items among a stream's ``output_item.done`` events."""
    return [
        event["item"]
        for event in exchange.events
        if event["type"] == "response.output_item.done" and event["item"]["type"] == "compaction"
    ]


def test_both_runs_finish_and_the_history_survives_the_compactions(
    session: CompactingSession,
) -> None:
    assert ok(session, "tool").final_text == scripted_model.CONTINUED
    # The user's message is kept beside the summary, so the word is still known.
    assert ok(session, "resume").final_text == "Your word is lemon."


def test_codex_compacted_twice_with_remote_compaction_v2(session: CompactingSession) -> None:
    ok(session, "resume")
    assert len(session.triggers) == 2  # mid-turn, then before the resumed turn
    for index in session.triggers:
        trigger = session.posts[index]
        assert trigger.path == "/v1/responses"
        assert "remote_compaction_v2" in trigger.headers["x-codex-beta-features"].split(",")
        assert trigger.body["stream"] is True
        assert trigger.body["tools"]  # a normal request, tools and all
        assert json.loads(trigger.headers["x-codex-turn-metadata"])["request_kind"] == (
            "compaction"
        )
    # Never the v1 endpoint: Codex 0.171 has none.
    assert not [e for e in session.exchanges if e.path.endswith("/responses/compact")]


def test_each_trigger_is_answered_with_exactly_one_compaction_item(
    session: CompactingSession,
) -> None:
    for index in session.triggers:
        trigger = session.posts[index]
        assert trigger.status == 200
        (compaction,) = compaction_items(trigger)
        (completed,) = [e for e in trigger.events if e["type"] == "response.completed"]
        assert completed["response"]["output"] == [compaction]
        assert compaction["encrypted_content"]


def test_codex_sends_the_compaction_item_back_and_the_upstream_sees_its_summary(
    session: CompactingSession,
) -> None:
    for index in session.triggers:
        (compaction,) = compaction_items(session.posts[index])
        after = session.posts[index + 1]
        assert not _is_trigger(after.body)
        assert after.status == 200
        assert [i for i in after.body["input"] if i.get("type") == "compaction"] == [
            {k: compaction[k] for k in ("type", "id", "encrypted_content")}
        ]
        assert [e["type"] for e in after.events][-1] == "response.completed"
    prompt = DEFAULT_COMPACTION_PROMPT
    compactions = [b for b in session.upstream_bodies if b["messages"][-1]["content"] == prompt]
    assert len(compactions) == 2
    summaries = [
        [m["content"] for m in b["messages"] if str(m["content"]).startswith(SUMMARY_PREFIX)]
        for b in session.upstream_bodies
    ]
    # Every call after the first compaction carries exactly one summary, the newest.
    first = session.upstream_bodies.index(compactions[0])
    assert all(not s for s in summaries[: first + 1])
    assert all(len(s) == 1 for s in summaries[first + 1 :])
    assert summaries[-1][0].startswith(SUMMARY_PREFIX + scripted_model.SUMMARY)


def test_everything_served_to_codex_passes_the_wire_checks(session: CompactingSession) -> None:
    assert session.exchanges
    assert not session.problems, "\n".join(session.problems)
