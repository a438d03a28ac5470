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
- anything else → :data:`HELLO`.
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
    return Reply.chat(reply_to(messages, body.get("tools") or []), received, turn)


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
    return ChatReply.text(HELLO)
