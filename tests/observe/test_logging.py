"""The loop's logs carry ids as structured fields and never a key, argument or message."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from responseloop.abc import Complete
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, chat_body, run

SECRET_ARGUMENT = "hunter2-argument"
SECRET_MESSAGE = "my-private-question"


def broken(arguments: Any) -> Any:
    raise RuntimeError(f"failed with {arguments}")


async def test_a_full_run_logs_ids_and_kinds_but_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup")
    tools.add("broken", broken)
    model = ScriptedChatModel(
        [
            ChatReply.calls(
                ("lookup", {"q": SECRET_ARGUMENT}, "c1"), ("broken", {"q": SECRET_ARGUMENT}, "c2")
            ),
            ChatReply.text("done"),
        ]
    )
    with caplog.at_level(logging.DEBUG, logger="responseloop"):
        outcome = await run(model, tools=tools, body=chat_body(SECRET_MESSAGE))

    assert isinstance(outcome, Complete)
    steps = [r for r in caplog.records if r.getMessage() in ("step started", "step completed")]
    # Four steps started (model, two tools, model); three completed (one tool failed).
    assert len(steps) == 4 + 3
    for record in steps:
        assert record.__dict__["response_id"] == RESPONSE_ID
        assert record.__dict__["step_kind"] in ("model_call", "tool_call")
        assert record.__dict__["step_id"].startswith("step_")
        assert record.__dict__["refired"] is False
    # Tool steps name their tool (never its arguments); model steps carry no tool field.
    tools_logged = [
        str(r.__dict__.get("tool")) for r in steps if r.__dict__["step_kind"] == "tool_call"
    ]
    assert sorted(tools_logged) == ["broken", "lookup", "lookup"]
    assert all("tool" not in r.__dict__ for r in steps if r.__dict__["step_kind"] == "model_call")
    failed = [r for r in caplog.records if r.getMessage().startswith("step failed")]
    # One WARNING line per failed step (ids, kind, tool, the error's type and the class
    # of the exception behind it); its message and traceback in a DEBUG line.
    warned = [r for r in failed if r.levelno == logging.WARNING]
    assert [r.__dict__["error_type"] for r in warned] == ["tool_error"]
    assert warned[0].__dict__["tool"] == "broken"
    assert warned[0].__dict__["exception_type"] == "RuntimeError"
    assert warned[0].__dict__["step_kind"] == "tool_call"
    assert warned[0].exc_info is None
    detailed = [r for r in failed if r.levelno == logging.DEBUG]
    assert len(detailed) == 1
    assert detailed[0].exc_info is not None
    assert isinstance(detailed[0].exc_info[1], RuntimeError)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == warned
    ended = [r for r in caplog.records if r.getMessage() == "response loop ended: completed"]
    assert [r.levelno for r in ended] == [logging.INFO]
    assert all(r.name.startswith("responseloop.") for r in caplog.records)
    visible = [r for r in caplog.records if r.levelno >= logging.INFO]
    text = "".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in visible)
    for secret in (SECRET_ARGUMENT, SECRET_MESSAGE, "sk-test"):
        assert secret not in text


def _record_with_exception(level: int) -> logging.LogRecord:
    try:
        raise ValueError(f"quoting {SECRET_ARGUMENT}")
    except ValueError:
        return logging.LogRecord(
            "responseloop.x", level, __file__, 1, "it broke", None, sys.exc_info()
        )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serves_formatters_show_an_exception_by_its_class_unless_at_debug(log_format: str) -> None:
    from responseloop._logs import JsonFormatter, TextFormatter

    kind = JsonFormatter if log_format == "json" else TextFormatter
    record = _record_with_exception(logging.WARNING)
    record.response_id = "resp_1"
    quiet = kind(details=False).format(record)
    assert "ValueError" in quiet
    assert SECRET_ARGUMENT not in quiet
    assert "Traceback" not in quiet
    assert "\n" not in quiet
    assert "resp_1" in quiet
    loud = kind(details=True).format(record)
    assert f"ValueError: quoting {SECRET_ARGUMENT}" in loud
    assert "Traceback" in loud
    if log_format == "json":
        assert json.loads(quiet)["exception"] == "ValueError"
        assert json.loads(quiet)["response_id"] == "resp_1"
