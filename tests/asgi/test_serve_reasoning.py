"""``responseloop serve``'s reasoning flags, on a real subprocess driven by the official
openai client over HTTP, with a loopback upstream that streams reasoning."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import openai
import pytest

from responseloop.cli import CliError, reasoning_options
from responseloop.openresponses._sealing import open_reasoning
from responseloop.testing import ChatReply
from tests.asgi.serving import serving
from tests.loopback_upstream import running_upstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the server process is what is tested


async def test_the_key_variable_seals_and_the_field_carries_replayed_reasoning(
    tmp_path: Path,
) -> None:
    async with running_upstream() as upstream:
        upstream.add(ChatReply.text("4", reasoning="2 and 2"), ChatReply.text("ok"))
        args = [
            "--upstream",
            upstream.url + "/v1",
            "--reasoning-key-env",
            "TEST_REASONING_KEY",
            "--replay-reasoning-as",
            "reasoning",
        ]
        env = {"TEST_REASONING_KEY": "s3cret"}
        async with (
            serving(args, log=tmp_path / "log", env=env) as server,
            openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="k") as client,
        ):
            first = await client.responses.create(
                model="m",
                input="2+2?",
                stream=False,
                store=False,
                include=["reasoning.encrypted_content"],
                reasoning={"summary": "auto"},
            )
            reasoning = first.output[0]
            assert reasoning.type == "reasoning"
            assert reasoning.encrypted_content is not None
            assert open_reasoning(reasoning.encrypted_content, b"s3cret") == "2 and 2"
            await client.responses.create(
                model="m",
                store=False,
                input=items(
                    {"role": "user", "content": "2+2?"},
                    reasoning.model_dump(mode="json", exclude_none=True),
                    first.output[1].model_dump(mode="json", exclude_none=True),
                    {"role": "user", "content": "sure?"},
                ),
            )
        assert upstream.bodies[1]["messages"][1] == {
            "role": "assistant",
            "content": "4",
            "reasoning": "2 and 2",
        }


def items(*entries: Any) -> Any:
    """Input items as the SDK takes them (its TypedDicts do not cover every dict here)."""
    return list(entries)


def flags(**values: object) -> argparse.Namespace:
    return argparse.Namespace(
        **{"reasoning_key_env": None, "replay_reasoning_as": "reasoning_content", **values}
    )


async def test_without_a_key_variable_a_random_key_is_made_and_said(tmp_path: Path) -> None:
    first, second = reasoning_options(flags()), reasoning_options(flags())
    assert len(first["reasoning_key"]) == 32
    assert first["reasoning_key"] != second["reasoning_key"]
    args = ["--upstream", "http://127.0.0.1:9/v1", "--no-upstream-check"]
    async with serving(args, log=tmp_path / "log"):
        pass
    assert "will not open on another process" in (tmp_path / "log").read_text()


def test_none_replays_no_reasoning_and_an_unset_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_REASONING_KEY", "k")
    options = reasoning_options(
        flags(reasoning_key_env="TEST_REASONING_KEY", replay_reasoning_as="none")
    )
    assert options == {"reasoning_key": b"k", "replay_reasoning_as": None}
    monkeypatch.delenv("TEST_REASONING_KEY")
    with pytest.raises(CliError, match=r"\$TEST_REASONING_KEY is not set"):
        reasoning_options(flags(reasoning_key_env="TEST_REASONING_KEY"))
