"""The upstream model every client test talks to: it answers from the conversation it is
sent (not from a counter), so any client, in any process, in any order gets the same
answer to the same conversation.

- the last message is a tool result → ``Result: <each tool output since the last user
  message, joined by " | ">``;
- "server weather" → calls ``server_weather`` (the server's tool);
- "client lookup" → calls ``client_lookup`` (the client's tool);
- "both tools" → calls both in one model turn (each only when offered, as a model calls
  only the tools it is given);
- "what is my <thing>" → ``Your <thing> is <w>.`` when an earlier user message said
  "my <thing> is <w>", else :data:`FORGOT` (so a chained turn proves the history came);
- "think" or "step by step" → reasoning (streamed when the request streams) then
  :data:`THOUGHT` (:data:`LONG_ANSWER` when asked to answer "at length"), unless
  ``reasoning_effort`` is ``"none"`` (thinking off);
- ``response_format`` ``json_schema`` → JSON made from the schema (an enum's first value,
  required properties only); ``json_object`` → a JSON object;
- codex's tools (``shell`` / ``exec_command``) with "run echo" → runs ``echo codex-ran``;
- the compaction prompt (:data:`~responseloop.core.DEFAULT_COMPACTION_PROMPT`) as the
  last user message → :data:`SUMMARY`, then how many user messages came before it; a
  summary (:data:`~responseloop.core.SUMMARY_PREFIX`) as the last → :data:`CONTINUED`;
- "say hi" → :data:`HELLO`; anything else → :data:`LONG_ANSWER` (64 words);
- ``tool_choice: "required"`` (or a named function) with no call above → calls the named
  tool, else each offered tool the last user message names (each word of its name but
  "get", such as "weather" for ``get_weather``; the first tool when none is named), all in one turn
  unless ``parallel_tool_calls`` is false (then only the first), with arguments made
  from each schema's required properties (a ``city`` is the city the message names);
- ``tool_choice: "none"`` → never a tool call;
- a token cap (``max_completion_tokens`` / ``max_tokens``) below the reasoning's and the
  answer's word count → reasoning first, then the answer's first words, up to the cap,
  ``finish_reason: "length"``; usage counts these words (a word counts as one token,
  reasoning words as reasoning tokens).
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from responseloop.testing import ChatReply
from tests.loopback_upstream import Received, Reply

HELLO = "Hello from the scripted model."
FORGOT = "I do not know your word."
THOUGHT = "Thought it through: 42."
REASONING = "Let me think step by step about it."
LONG_ANSWER = " ".join(["The", "scripted", "model", "answers", "at", "length:", *["more"] * 58])
SERVER_WEATHER = {"city": "Paris"}
SUMMARY = "The scripted summary"
CONTINUED = "Continuing from the summary."
COMPACTION_PROMPT_START = DEFAULT_COMPACTION_PROMPT[:40].lower()
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
    choice = body.get("tool_choice")
    # tool_choice "none": the model is offered no tool to call.
    tools = [] if choice == "none" else body.get("tools") or []
    reply = reply_to(messages, tools)
    if tools and not reply.tool_calls and (choice == "required" or isinstance(choice, dict)):
        reply = _forced_calls(tools, choice, messages, body.get("parallel_tool_calls"))
    if reply.reasoning is not None and body.get("reasoning_effort") == "none":
        reply = attrs.evolve(reply, reasoning=None)
    if not reply.tool_calls and isinstance(body.get("response_format"), dict):
        reply = _formatted(reply, body["response_format"])
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    thought = (reply.reasoning or "").split()
    words = (reply.content or "").split()
    if cap and len(thought) + len(words) > cap:
        # A reasoning model spends the cap on thinking first, then on the answer.
        kept = thought[:cap]
        reply = attrs.evolve(
            reply,
            reasoning=" ".join(kept) if reply.reasoning is not None else None,
            content=" ".join(words[: cap - len(kept)]),
            finish_reason="length",
        )
        thought, words = kept, words[: cap - len(kept)]
    if reply.usage is not None:
        reply = attrs.evolve(reply, usage=_usage(messages, len(thought), len(words)))
    return Reply.chat(reply, received, turn)


def _usage(messages: list[dict[str, Any]], reasoning: int, content: int) -> dict[str, Any]:
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    completion = max(reasoning + content, 1)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _formatted(reply: ChatReply, response_format: dict[str, Any]) -> ChatReply:
    """The answer as JSON, as a model constrained by ``response_format`` writes it."""
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return attrs.evolve(reply, content=json.dumps(_from_schema(schema)))
    if response_format.get("type") == "json_object":
        return attrs.evolve(reply, content=json.dumps({"answer": reply.content or ""}))
    return reply


_EXAMPLES = {"string": "Paris", "integer": 1, "number": 1, "boolean": True}


def _from_schema(schema: dict[str, Any]) -> Any:
    """A value matching a simple JSON schema (enums, objects, arrays, scalars)."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _from_schema(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [_from_schema(schema.get("items") or {})]
    return _EXAMPLES.get(kind, "x") if isinstance(kind, str) else "x"


def _forced_calls(
    tools: list[dict[str, Any]], choice: Any, messages: list[dict[str, Any]], parallel: Any
) -> ChatReply:
    functions = [tool.get("function", {}) for tool in tools]
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last_user = users[-1] if users else ""
    if isinstance(choice, dict):
        named = choice.get("function", {}).get("name")
        chosen = [f for f in functions if f.get("name") == named][:1] or functions[:1]
    else:
        words = set(re.findall(r"[a-z]+", last_user.lower()))
        # A tool the message names: every word of its name but "get" ("weather" for
        # get_weather; server_weather needs "server weather").
        chosen = [
            f
            for f in functions
            if set(str(f.get("name", "")).lower().split("_")) - {"get"} <= words
        ] or functions[:1]
    if parallel is False:
        chosen = chosen[:1]
    city = re.search(r"\bin ([A-Z][a-z]+)", last_user)
    calls = []
    for index, function in enumerate(chosen):
        schema = function.get("parameters") or {}
        arguments = _from_schema({**schema, "type": "object"})
        if city and "city" in arguments:
            arguments["city"] = city.group(1)
        calls.append((function["name"], arguments, f"call_{function['name']}_{index}"))
    return ChatReply.calls(*calls)


def reply_to(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ChatReply:
    declared = {tool.get("function", {}).get("name") for tool in tools}
    said_by_user = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last_user = said_by_user[-1].lower() if said_by_user else ""
    if messages and messages[-1].get("role") == "tool":
        since_user: list[str] = []
        for message in reversed(messages):
            if message.get("role") == "user":
                break
            if message.get("role") == "tool":
                since_user.insert(0, _text(message.get("content")))
        return ChatReply.text("Result: " + " | ".join(since_user))
    if last_user.startswith(COMPACTION_PROMPT_START):
        return ChatReply.text(f"{SUMMARY} ({len(said_by_user) - 1} user messages)")
    if last_user.startswith(SUMMARY_PREFIX.lower()):
        return ChatReply.text(CONTINUED)
    if "both tools" in last_user and {"server_weather", "client_lookup"} <= declared:
        return ChatReply.calls(
            ("server_weather", SERVER_WEATHER, "call_both_server"),
            ("client_lookup", CLIENT_LOOKUP, "call_both_client"),
        )
    if "server weather" in last_user and "server_weather" in declared:
        return ChatReply.tool_call("server_weather", SERVER_WEATHER, call_id="call_server_1")
    if "client lookup" in last_user and "client_lookup" in declared:
        return ChatReply.tool_call("client_lookup", CLIENT_LOOKUP, call_id="call_client_1")
    asked = re.search(r"what is my (\w+)", last_user)
    if asked:
        thing = asked.group(1)
        for said in said_by_user[:-1]:
            found = re.search(rf"\bmy {thing} is (\w+)", said, re.IGNORECASE)
            if found:
                return ChatReply.text(f"Your {thing} is {found.group(1)}.")
        return ChatReply.text(FORGOT)
    if "think" in last_user or "step by step" in last_user:
        # Asked to explain at length, it answers at length after thinking.
        said = LONG_ANSWER if "at length" in last_user else THOUGHT
        return ChatReply.text(said, reasoning=REASONING)
    if "run echo" in last_user:
        if "shell" in declared:
            return ChatReply.tool_call("shell", {"command": ["echo", "codex-ran"]})
        if "exec_command" in declared:
            return ChatReply.tool_call("exec_command", {"cmd": "echo codex-ran"})
    if "say hi" in last_user:
        return ChatReply.text(HELLO)
    return ChatReply.text(LONG_ANSWER)
