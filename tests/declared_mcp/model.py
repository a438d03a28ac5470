"""The upstream model of the request-declared MCP tests. It answers from the conversation
it is sent (not from a counter), so the same conversation gets the same answer from any
replica, in any order:

- the last message is a tool result → ``Result: <each tool output since the last user
  message, joined by " | ">``;
- the last user message holds ``call NAME {json}`` (one or more) → calls each named tool
  that it is offered, with those arguments (a name it is not offered is called anyway
  when the message says ``force``, as a model may call what it was not given);
- anything else → ``Offered: <the offered tool names, sorted, comma-separated>``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from responseloop.testing import ChatReply
from tests.loopback_upstream import Received, Reply

_CALL = re.compile(r"call (\w+) (\{[^{}]*\})")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def offered(body: dict[str, Any]) -> list[str]:
    """The names of the tools a chat request offers, sorted."""
    return sorted(str(tool["function"]["name"]) for tool in body.get("tools") or [])


def tool_results(body: dict[str, Any]) -> list[str]:
    """The content of each ``tool`` message since the last user message of a chat request."""
    results: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "user":
            results = []
        elif message.get("role") == "tool":
            results.append(_text(message.get("content")))
    return results


def answer(received: Received) -> Reply:
    body = received.json()
    messages: list[dict[str, Any]] = body.get("messages", [])
    turn = 1 + sum(message.get("role") == "assistant" for message in messages)
    if messages and messages[-1].get("role") == "tool":
        reply = ChatReply.text("Result: " + " | ".join(tool_results(body)))
        return Reply.chat(reply, received, turn)
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last = users[-1] if users else ""
    names = offered(body)
    calls = [
        (name, json.loads(arguments), f"call_{turn}_{index}")
        for index, (name, arguments) in enumerate(_CALL.findall(last))
        if name in names or "force" in last
    ]
    if calls:
        return Reply.chat(ChatReply.calls(*calls), received, turn)
    return Reply.chat(ChatReply.text("Offered: " + ",".join(names)), received, turn)
