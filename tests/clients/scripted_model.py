"""The upstream model every client test talks to: it answers from the conversation it is
sent (not from a counter), so any client, in any process, in any order gets the same
answer to the same conversation.

- the last message is a tool result → ``Result: <each tool output since the last user
  message, joined by " | ">``;
- "server weather" → calls ``server_weather`` (the server's tool);
- "client lookup" → calls ``client_lookup`` (the client's tool);
- "both tools" → calls both in one model turn;
- "what is my word" → ``Your word is <w>.`` when an earlier user message said
  "my word is <w>", else :data:`FORGOT`;
- "think" → reasoning (streamed when the request streams) then :data:`THOUGHT`;
- codex's tools (``shell`` / ``exec_command``) with "run echo" → runs ``echo codex-ran``;
- "say hi" → :data:`HELLO`; anything else → :data:`LONG_ANSWER` (64 words);
- ``tool_choice: "required"`` (or a named function) with no call above → calls the first
  (or the named) tool with arguments made from its schema's required properties;
- a token cap (``max_completion_tokens`` / ``max_tokens``) below an answer's word count →
  the first words, ``finish_reason: "length"`` (a word counts as one token).
"""

from __future__ import annotations

import re
from typing import Any

from responseloop.testing import ChatReply
from tests.loopback_upstream import Received, Reply

HELLO = "Hello from the scripted model."
FORGOT = "I do not know your word."
THOUGHT = "Thought it through: 42."
REASONING = "Let me think step by step about it."
LONG_ANSWER = " ".join(["The", "scripted", "model", "answers", "at", "length:", *["more"] * 58])
SERVER_WEATHER = {"city": "Paris"}
CLIENT_LOOKUP = {"key": "k1"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def answer(received: Received) -> Reply:
    body = received.json()
    messages: list[dict[str, Any]] = body.get("messages", [])
    turn = 1 + sum(message.get("role") == "assistant" for message in messages)
    tools = body.get("tools") or []
    reply = reply_to(messages, tools)
    choice = body.get("tool_choice")
    if tools and not reply.tool_calls and (choice == "required" or isinstance(choice, dict)):
        reply = _forced_call(tools, choice)
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    words = (reply.content or "").split()
    if cap and len(words) > cap:
        reply = ChatReply.text(" ".join(words[:cap]), finish_reason="length")
    return Reply.chat(reply, received, turn)


_EXAMPLES = {"string": "Paris", "integer": 1, "number": 1, "boolean": True}


def _forced_call(tools: list[dict[str, Any]], choice: Any) -> ChatReply:
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    function = next(
        (t["function"] for t in tools if named in (None, t.get("function", {}).get("name"))),
        tools[0]["function"],
    )
    schema = function.get("parameters") or {}
    properties = schema.get("properties", {})
    arguments = {
        name: _EXAMPLES.get(properties.get(name, {}).get("type"), "x")
        for name in schema.get("required", [])
    }
    return ChatReply.tool_call(function["name"], arguments)


def reply_to(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ChatReply:
    declared = {tool.get("function", {}).get("name") for tool in tools}
    users = [_text(m.get("content")).lower() for m in messages if m.get("role") == "user"]
    last_user = users[-1] if users else ""
    if messages and messages[-1].get("role") == "tool":
        since_user: list[str] = []
        for message in reversed(messages):
            if message.get("role") == "user":
                break
            if message.get("role") == "tool":
                since_user.insert(0, _text(message.get("content")))
        return ChatReply.text("Result: " + " | ".join(since_user))
    if "both tools" in last_user:
        return ChatReply.calls(
            ("server_weather", SERVER_WEATHER, "call_both_server"),
            ("client_lookup", CLIENT_LOOKUP, "call_both_client"),
        )
    if "server weather" in last_user:
        return ChatReply.tool_call("server_weather", SERVER_WEATHER, call_id="call_server_1")
    if "client lookup" in last_user:
        return ChatReply.tool_call("client_lookup", CLIENT_LOOKUP, call_id="call_client_1")
    if "what is my word" in last_user:
        for said in users[:-1]:
            found = re.search(r"my word is (\w+)", said)
            if found:
                return ChatReply.text(f"Your word is {found.group(1)}.")
        return ChatReply.text(FORGOT)
    if "think" in last_user:
        return ChatReply.text(THOUGHT, reasoning=REASONING)
    if "run echo" in last_user:
        if "shell" in declared:
            return ChatReply.tool_call("shell", {"command": ["echo", "codex-ran"]})
        if "exec_command" in declared:
            return ChatReply.tool_call("exec_command", {"cmd": "echo codex-ran"})
    if "say hi" in last_user:
        return ChatReply.text(HELLO)
    return ChatReply.text(LONG_ANSWER)
