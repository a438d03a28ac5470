"""docs/compatibility.md's tables against the spec, the SDK and the code: every request
field, include value, input item, output item and stream event the Open Responses OpenAPI
names (tests/data/openresponses_surface_2026-04-24.json, extracted from it) and every field
of the openai SDK's create parameters has a row; a field a row calls refused gets a 400
naming it, and one called supported or accepted is not refused."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsBase
from openai.types.responses.response_includable import ResponseIncludable

from responseloop.chat import to_chat_body
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import parse_request

ROOT = Path(__file__).parent.parent
SURFACE = json.loads(
    (Path(__file__).parent / "data/openresponses_surface_2026-04-24.json").read_text()
)
SDK_FIELDS = sorted(ResponseCreateParamsBase.__annotations__)
SDK_INCLUDES = sorted(typing.get_args(ResponseIncludable))


def tables() -> dict[str, dict[str, str]]:
    """Each ``##`` section's table: every backticked name of a row's first cell, mapped
    to the row's second cell (its support)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (ROOT / "docs/compatibility.md").read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line.removeprefix("## ").strip(), {})
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            for name in re.findall(r"`([^`]+)`", cells[0]):
                current[name] = cells[1]
    return sections


TABLES = tables()
REQUEST = TABLES["Request fields"]

# A value of each request field the code honours or accepts, and the value of each one it
# refuses (truncation has both). A new row needs its sample here.
ALLOWED_F = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}
ACCEPTED: dict[str, Any] = {
    "model": "m",
    "input": [{"role": "user", "content": "hi"}],
    "instructions": "be brief",
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "tool_choice": ALLOWED_F,
    "parallel_tool_calls": False,
    "max_tool_calls": 3,
    "max_output_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.9,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "seed": 7,
    "top_logprobs": 2,
    "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
    "text": {"format": {"type": "json_object"}, "verbosity": "low"},
    "reasoning": {"effort": "low", "summary": "auto"},
    "stream": True,
    "stream_options": {"include_obfuscation": False},
    "store": False,
    "previous_response_id": "resp_1",
    "conversation": "conv_1",
    "background": True,
    "metadata": {"k": "v"},
    "user": "u",
    "safety_identifier": "s",
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "client_metadata": {"k": "v"},
    "access_programs": {"cyber": "standard"},
    "truncation": "disabled",
    "context_management": [{"type": "compaction", "compact_threshold": 1000}],
}  # fmt: skip
REFUSED: dict[str, Any] = {
    "truncation": "auto",
    "prompt": {"id": "pmpt_1"},
    "moderation": {"model": "omni-moderation-latest"},
    "prompt_cache_options": {"mode": "explicit"},
    "background_options": {"completion_window": "2h"},
    "image": {"context_compression": "auto"},
}


def test_every_request_field_of_the_spec_and_the_sdk_has_a_row() -> None:
    fields = set(SURFACE["request_fields"]) | set(SDK_FIELDS)
    assert sorted(fields - REQUEST.keys()) == []


@pytest.mark.parametrize(
    ("section", "names"),
    [
        ("Include values", SURFACE["include_values"] + SDK_INCLUDES),
        ("Input items", SURFACE["input_item_types"]),
        ("Output items", SURFACE["output_item_types"]),
        ("Stream events", SURFACE["stream_event_types"]),
    ],
)
def test_every_name_of_the_spec_has_a_row(section: str, names: list[str]) -> None:
    assert sorted(set(names) - TABLES[section].keys()) == []


def refusal(field: str, value: Any) -> InvalidRequestError | None:
    body = {"model": "m", "input": "hi", field: value}
    try:
        request = parse_request(body)
        to_chat_body(request)
    except InvalidRequestError as error:
        return error
    return None


@pytest.mark.parametrize("field", sorted(REQUEST))
def test_each_request_row_says_what_the_code_does(field: str) -> None:
    support = REQUEST[field]
    if support.startswith("refused") or "only" in support:
        error = refusal(field, REFUSED[field])
        assert error is not None, f"{field} is called refused but was accepted"
        assert error.param == field
    else:
        assert field not in REFUSED, f"{field} is refused but the table says {support!r}"
    if not support.startswith("refused"):
        assert refusal(field, ACCEPTED[field]) is None


@pytest.mark.parametrize("value", sorted(TABLES["Include values"]))
def test_each_include_row_says_what_the_code_does(value: str) -> None:
    error = refusal("include", ["message.output_text.logprobs", value])
    if TABLES["Include values"][value].startswith("refused"):
        assert error is not None
        assert error.param == "include[1]"
    else:
        assert error is None


@pytest.mark.parametrize(
    "kind", [k for k, s in TABLES["Input items"].items() if s.startswith("refused")]
)
def test_each_refused_input_item_is_refused_by_its_type(kind: str) -> None:
    error = refusal("input", [{"type": kind, "id": "x_1"}])
    assert error is not None
    assert error.param == "input[0].type"


MCP_FIELD_VALUES: dict[str, Any] = {
    "server_label": "rooms",
    "server_url": "https://mcp.test/mcp",
    "server_description": "Rooms.",
    "allowed_tools": ["book"],
    "require_approval": "never",
    "headers": {"X-Key": "k"},
    "authorization": "token",
    "allowed_callers": ["direct"],
    "connector_id": "connector_gmail",
    "tunnel_id": "tunnel_1",
    "defer_loading": True,
}


def test_every_field_of_the_sdk_mcp_tool_has_a_row_that_says_what_happens() -> None:
    from openai.types.responses.tool_param import Mcp

    rows = tables()["Request-declared MCP tools"]
    assert set(rows) == set(Mcp.__annotations__) - {"type"}
    for field, support in rows.items():
        tool = {"type": "mcp", "server_label": "rooms", field: MCP_FIELD_VALUES[field]}
        body = {"model": "m", "input": "q", "tools": [tool]}
        if support == "refused":
            with pytest.raises(InvalidRequestError) as caught:
                parse_request(body)
            assert caught.value.param == f"tools[0].{field}"
        else:
            assert parse_request(body).mcp_servers[0].server_label == "rooms"
