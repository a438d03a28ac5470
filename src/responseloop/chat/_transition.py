"""ChatTransition: the default transition function, over a Chat Completions request.

Pure: no I/O. It decides from the chain alone, so the same chain always gives the same
decision, which is what makes resume work. The Open Responses layer translates a
``/v1/responses`` request into the Chat Completions body this transition starts from.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..abc._config import LoopConfig
from ..abc._dialect import ToolCall
from ..abc._json import JSON
from ..abc._steps import (
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    NextAction,
    Scope,
    StepDescriptor,
    StepKind,
    StepState,
    _descriptor_owning,
)
from ..abc._tools import ToolSchema
from ..core._compaction import (
    DEFAULT_COMPACTION_PROMPT,
    compacted_window,
    context_tokens,
    summary_of,
)
from ..core._tool_names import tool_name_clash
from ..core._tool_outputs import steps_by_call_id, tool_output_text
from ..exceptions import InvalidRequestError

__all__ = ["ChatTransition", "first_choice", "model_message", "tool_calls_of"]


def first_choice(completion: JSON) -> Mapping[str, Any]:
    """``choices[0]`` of a chat.completion, or ``{}``."""
    # type() before isinstance(): a stored payload is a dict, and an ABC check is slow.
    if type(completion) is dict or isinstance(completion, Mapping):
        choices = completion.get("choices")
        if isinstance(choices, list) and choices:
            choice = choices[0]
            if type(choice) is dict or isinstance(choice, Mapping):
                return choice
    return {}


def model_message(completion: JSON) -> Mapping[str, Any]:
    """``choices[0].message`` of a chat.completion, or ``{}``."""
    message = first_choice(completion).get("message")
    return message if type(message) is dict or isinstance(message, Mapping) else {}


def tool_calls_of(completion: JSON) -> list[ToolCall]:
    """The function tool calls of a chat.completion, in the model's order."""
    calls: list[ToolCall] = []
    raw_calls = model_message(completion).get("tool_calls")
    for index, raw in enumerate(raw_calls if isinstance(raw_calls, list) else []):
        function = raw.get("function") if isinstance(raw, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = "{}" if arguments is None else json.dumps(arguments, separators=(",", ":"))
        call_id = raw.get("id") if isinstance(raw.get("id"), str) else f"call_{index}"
        calls.append(ToolCall(call_id, function["name"], arguments))
    return calls


def _unavailable(name: str) -> str:
    return json.dumps({"error": f"tool {name!r} is not available"})


def _as_dict(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


def _skipped(budget: int) -> str:
    return json.dumps(
        {
            "error": f"not run: this response may make at most {budget} tool calls "
            "(max_tool_calls); answer without this call"
        }
    )


def _step_error(step: ChainStep, message: str) -> dict[str, Any]:
    """The error a failed or cancelled step ends the scope with; it always carries a
    ``code`` from the SDK's closed set, whatever the step recorded."""
    return {"type": "step_failed", "code": "server_error", "message": message, **(step.error or {})}


def _labels(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _leading(value: Iterable[StepDescriptor]) -> tuple[StepDescriptor, ...]:
    steps = tuple(value)
    for step in steps:
        if step.kind is not StepKind.TOOL_CALL:
            raise ValueError("leading_calls are tool_call steps")
    return steps


def _allowed(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _forced(tool_choice: object) -> bool:
    return tool_choice == "required" or isinstance(tool_choice, Mapping)


@attrs.frozen
class ChatTransition:
    """The default :class:`~responseloop.abc.Transition` over a Chat Completions request body.

    Attributes:
        body: the Chat Completions body of the first model call (``model``, ``messages``,
            the client's function ``tools``, settings). Server-side tools of the scope are
            added to ``tools`` by the transition.
        result_text: complete with the final message's text instead of the whole
            chat.completion (what a sub-agent hands back to its caller as a tool output).
        max_tool_calls: the most server-side tool calls this scope runs (``None``: no
            budget). Calls past it are not run; the model is told each was skipped, so it
            can still give its answer. The request's ``max_tool_calls`` of Open Responses.
        keep_reasoning: whether the model's messages go back to its later calls with the
            reasoning it gave on them (in its own field); ``False`` for upstreams that
            reject reasoning in the messages they are sent.
        listings: the MCP servers (``server_label``) whose tools are listed before the
            first model call, one ``tool_listing`` step each; a failed listing fails the
            scope.
        leading_calls: tool calls to run before the first model call (calls the client
            approved): each answers a ``tool`` message already in ``body``'s messages,
            under the same ``call_id``, whose content becomes the call's output. Only a
            call of a scope tool that ``requires_approval``, of the ``server_label`` it
            names, runs, and no more of them than ``max_tool_calls`` allows.
        compact_threshold: compact the conversation mid-scope once its context passes
            this many tokens (``None``: never): after a round of server-side tools, when
            the last model call's ``usage.total_tokens`` (an estimate, the characters of
            the next call's messages over four, when the upstream reports no usage) is at
            least this, a ``compaction`` step summarises the conversation, and the model
            calls after it are sent the compacted window (see below).
        compact_only: the scope is one compaction of ``body``'s conversation, and
            completes with it (a ``compaction_trigger`` request).
        compaction_prompt: what a compaction asks the model, after the conversation.

    Decisions, over the chain of one scope:

    * empty chain: the ``listings``, then the ``leading_calls``, then one model call;
    * the model asked for no tools: complete;
    * it asked for server-side tools: run them (a concurrent fan-out, in call order);
      tools it may not use are never run, and are answered with an error output;
    * it also asked for client function tools, or for server-side tools that
      ``requires_approval``: after the other server-side ones, complete, so the client
      answers (or approves) those;
    * after the tools: a model call with every tool output answered under its ``call_id``;
    * a failed model call fails the scope; a failed tool is fed back to the model, or fails
      the scope when ``LoopConfig.tool_errors == "fail"``;
    * server-side calls past ``max_tool_calls`` are answered as skipped, not run.

    A forced ``tool_choice`` binds only the first model call; later ones use ``auto``.

    After a compaction, a model call is sent the compacted window: ``body``'s system,
    developer and user messages, the summary (as a user message), then the rounds after
    the compaction. A compaction is sent the window the next model call would have been
    sent, then the prompt, with ``tool_choice: "none"``; it is no model call for
    ``LoopConfig.max_iterations``. A failed compaction fails the scope.

    ``allowed_tools`` (the names of an Open Responses ``allowed_tools`` choice, in its
    order, so a refusal names ``tool_choice.tools[i]``) narrows what every model call is
    offered, client and server-side tools alike; a call of a tool outside it is treated
    exactly like a call of an unknown tool (never run, answered as unavailable, or
    failing per ``LoopConfig.unknown_tools``). ``None``: every tool may be called.
    """

    body: Mapping[str, Any] = attrs.field(converter=_as_dict)
    result_text: bool = False
    max_tool_calls: int | None = None
    keep_reasoning: bool = True
    allowed_tools: tuple[str, ...] | None = attrs.field(default=None, converter=_allowed)
    listings: tuple[str, ...] = attrs.field(default=(), converter=_labels)
    leading_calls: tuple[StepDescriptor, ...] = attrs.field(default=(), converter=_leading)
    compact_threshold: int | None = None
    compact_only: bool = False
    compaction_prompt: str = DEFAULT_COMPACTION_PROMPT
    _judged: list[tuple[Scope, InvalidRequestError | None]] = attrs.field(
        init=False, factory=list, eq=False, repr=False
    )
    """The last scope :meth:`refusal` judged and its verdict: a scope's decisions all ask
    the same question of the same (frozen) scope."""

    @property
    def model(self) -> str | None:
        """The model of the request."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def client_tool_names(self) -> frozenset[str]:
        """Names of the client function tools of the request."""
        return frozenset(name for name in self._tool_names() if name)

    def _callable(self, name: str) -> bool:
        return self.allowed_tools is None or name in self.allowed_tools

    def _server_tools(self, scope: Scope) -> dict[str, ToolSchema]:
        """The scope's server-side tools the model is offered and may call."""
        return {name: tool for name, tool in scope.tools.items() if self._callable(name)}

    def _tool_names(self) -> list[str]:
        # By position in the body's tools ("" for an entry without a name), so a refusal
        # names tools[i] of the request: the Responses translation keeps their order.
        return [_chat_tool_name(tool) for tool in self.body.get("tools") or []]

    def refusal(self, scope: Scope) -> InvalidRequestError | None:
        """Why this request cannot run in ``scope`` at all (a client tool named like one of
        the scope's server-side tools), or ``None``. :meth:`decide` fails with it; a
        service asks it before storing anything, to answer a 400 instead."""
        clash = tool_name_clash(self._tool_names(), scope.tools)
        if clash is not None or self.allowed_tools is None:
            return clash
        known = self.client_tool_names | scope.tools.keys()
        for index, name in enumerate(self.allowed_tools):
            if name not in known:
                return InvalidRequestError(
                    f"tool_choice allows {name!r}, which is neither a tool of the request "
                    f"nor a server-side tool; known: {sorted(known)}",
                    param=f"tool_choice.tools[{index}].name",
                )
        return None

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        # The one place a client tool named like a server-side tool is judged: every
        # entry point (the service, its adapters, run_response_loop) decides through here.
        judged = self._judged
        if judged and judged[0][0] is scope:
            clash = judged[0][1]
        else:
            clash = self.refusal(scope)
            judged[:] = [(scope, clash)]
        if clash is not None:
            return Fail(clash.to_error())
        if self.compact_only:
            return self._compact_only(chain, scope)
        last_model = _last_index(chain, StepKind.MODEL_CALL)
        if last_model is None:
            if self.listings or self.leading_calls:
                return self._before_first_call(chain, scope, config)
            return AppendSteps([_descriptor_owning(StepKind.MODEL_CALL, self._body(chain, scope))])
        model_step = chain[last_model]
        if model_step.state is not StepState.COMPLETED:
            return Fail(_step_error(model_step, "the model call did not finish"))
        calls = tool_calls_of(model_step.response_payload)
        if not calls:
            return self._complete(model_step)
        offered = self._server_tools(scope)
        server = [c for c in calls if c.name in offered and not offered[c.name].requires_approval]
        # Calls waiting for the client's approval are never run here: the scope completes
        # with them unanswered, as with a client's calls.
        paused = [c for c in calls if c.name in offered and offered[c.name].requires_approval]
        client_names = self.client_tool_names  # a set built from the body: once per decision
        client = [
            c
            for c in calls
            if c.name not in scope.tools and c.name in client_names and self._callable(c.name)
        ]
        unknown = [c for c in calls if c not in server and c not in client and c not in paused]
        if unknown and config.unknown_tools == "fail":
            names = sorted({c.name for c in unknown})
            return Fail(
                {
                    "type": "tool_error",
                    "code": "server_error",
                    "message": f"the model called tools it may not use: {names}",
                }
            )
        after = chain[last_model + 1 :]
        round_steps = [step for step in after if step.kind is not StepKind.COMPACTION]
        answers = steps_by_call_id(round_steps)
        # Recording a fan-out is serial, so a worker may have died before recording all of
        # it: the calls without a step are appended now rather than lost.
        runnable = server[: self._budget_left(chain[:last_model], len(server))]
        missing = []
        for call in runnable:
            queue = answers.get(call.call_id)
            if queue:
                queue.pop(0)  # answered by a step already recorded
            else:
                missing.append(call)
        if missing:
            return AppendSteps(
                [
                    StepDescriptor.tool_call(
                        c.name,
                        c.call_id,
                        c.parsed_arguments(),
                        server_label=scope.tools[c.name].server_label,
                    )
                    for c in missing
                ]
            )
        failed = [s for s in round_steps if s.state is not StepState.COMPLETED]
        if failed and config.tool_errors == "fail":
            return Fail(_step_error(failed[0], "a tool call did not finish"))
        if client or paused:
            return self._complete(model_step)
        compaction = after[-1] if after and after[-1].kind is StepKind.COMPACTION else None
        if compaction is not None and compaction.state is not StepState.COMPLETED:
            return Fail(_step_error(compaction, "the compaction did not finish"))
        body = self._body(chain, scope)
        if compaction is None and self._over_threshold(model_step, body):
            compaction_body = self._compaction_body(body)
            return AppendSteps([_descriptor_owning(StepKind.COMPACTION, compaction_body)])
        return AppendSteps([_descriptor_owning(StepKind.MODEL_CALL, body)])

    def _compact_only(self, chain: Sequence[ChainStep], scope: Scope) -> NextAction:
        """One compaction of the conversation, then complete with it."""
        if not chain:
            body = self._compaction_body(self._body(chain, scope))
            return AppendSteps([_descriptor_owning(StepKind.COMPACTION, body)])
        step = chain[-1]
        if step.kind is not StepKind.COMPACTION or step.state is not StepState.COMPLETED:
            return Fail(_step_error(step, "the compaction did not finish"))
        return Complete(step.response_payload)

    def _over_threshold(self, model_step: ChainStep, body: Mapping[str, Any]) -> bool:
        threshold = self.compact_threshold
        if threshold is None:
            return False
        messages = body.get("messages") or []
        return context_tokens(model_step.response_payload, messages) >= threshold

    def _compaction_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The request of a compaction: the window the next model call would be sent,
        then the prompt; answered in plain text, whole (not streamed), with no tool call.
        The tools stay offered, so the conversation's calls of them still make sense."""
        compaction = {key: value for key, value in body.items() if key not in _NOT_FOR_COMPACTION}
        prompt = {"role": "user", "content": self.compaction_prompt}
        compaction["messages"] = [*(body.get("messages") or []), prompt]
        if compaction.get("tools"):
            compaction["tool_choice"] = "none"
        return compaction

    def _before_first_call(
        self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig
    ) -> NextAction:
        """What runs before the first model call: the listings (a fan-out), then the
        approved calls (a fan-out), then the model call."""
        listed = {
            step.request_payload.get("server_label")
            for step in chain
            if step.kind is StepKind.TOOL_LISTING
        }
        missing = [
            StepDescriptor.tool_listing(label) for label in self.listings if label not in listed
        ]
        if missing:
            return AppendSteps(missing)
        for step in chain:
            if step.kind is StepKind.TOOL_LISTING and step.state is not StepState.COMPLETED:
                return Fail(_step_error(step, "the MCP server's tools could not be listed"))
        done = {step.request_payload.get("call_id") for step in chain if step.is_tool}
        # Only a call of a tool that waits for approval, of the server it names; the
        # model is told any other did not run.
        approvable = [
            c
            for c in self.leading_calls
            if (tool := scope.tools.get(c.tool_name or "")) is not None
            and tool.runs_approved_call(c.request_payload.get("server_label"))
        ]
        runnable = approvable[: self._budget_left((), len(approvable))]
        calls = [c for c in runnable if c.request_payload["call_id"] not in done]
        if calls:
            return AppendSteps(calls)
        failed = [s for s in chain if s.is_tool and s.state is not StepState.COMPLETED]
        if failed and config.tool_errors == "fail":
            return Fail(_step_error(failed[0], "a tool call did not finish"))
        return AppendSteps([_descriptor_owning(StepKind.MODEL_CALL, self._body(chain, scope))])

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> ChatTransition:
        spec = tool.agent
        arguments = step.request_payload.get("arguments")
        if isinstance(arguments, Mapping) and isinstance(arguments.get("input"), str):
            task = arguments["input"]
        else:
            task = arguments if isinstance(arguments, str) else json.dumps(arguments)
        messages: list[dict[str, Any]] = []
        if spec is not None and spec.instructions:
            messages.append({"role": "system", "content": spec.instructions})
        messages.append({"role": "user", "content": task})
        model = (spec.model if spec is not None else None) or self.model
        body: dict[str, Any] = {"model": model, "messages": messages}
        if self.body.get("stream") is True:
            body["stream"] = True
            # Without it a streamed upstream reports no usage for the sub-agent's calls.
            body["stream_options"] = {"include_usage": True}
        return ChatTransition(body, result_text=True, keep_reasoning=self.keep_reasoning)

    def _budget_left(self, earlier: Sequence[ChainStep], wanted: int) -> int:
        """How many of ``wanted`` server-side calls may run after the ``earlier`` steps."""
        if self.max_tool_calls is None:
            return wanted
        used = sum(1 for step in earlier if step.is_tool)
        return max(0, min(wanted, self.max_tool_calls - used))

    def _complete(self, model_step: ChainStep) -> Complete:
        if self.result_text:
            content = model_message(model_step.response_payload).get("content")
            return Complete(content if isinstance(content, str) else "")
        return Complete(model_step.response_payload)

    def _body(self, chain: Sequence[ChainStep], scope: Scope) -> dict[str, Any]:
        body = dict(self.body)
        compacted = _last_index(chain, StepKind.COMPACTION)
        if compacted is not None:
            # The model is sent the compacted window: what the summary replaced is gone,
            # and only the rounds after it are translated (the tool calls before it
            # still count against max_tool_calls).
            summary = summary_of(chain[compacted].response_payload)
            messages = _answered(body.get("messages") or [], chain)
            body["messages"] = compacted_window(messages, summary)
            return self._window(body, chain[compacted + 1 :], scope, used_before=chain[:compacted])
        if self.leading_calls and chain:
            body["messages"] = _answered(body.get("messages") or [], chain)
        return self._window(body, chain, scope, used_before=())

    def _window(
        self,
        body: dict[str, Any],
        chain: Sequence[ChainStep],
        scope: Scope,
        *,
        used_before: Sequence[ChainStep],
    ) -> dict[str, Any]:
        """``body`` with the scope's tools and the messages of ``chain``'s rounds added;
        ``used_before`` are steps before ``chain`` whose tool calls count against
        ``max_tool_calls`` (those a compaction summarised)."""
        client_tools = [t for t in body.get("tools") or [] if self._callable(_chat_tool_name(t))]
        offered = self._server_tools(scope)
        tools = client_tools + [t._chat_tool for t in offered.values()]
        if tools:
            body["tools"] = tools
        else:
            # Chat Completions rejects these without tools; the answer is the same without.
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        if used_before:
            called = True  # a compaction comes after a model call
        elif self.listings or self.leading_calls:
            # Steps before the first model call are no round: the first call is still to come.
            called = any(step.kind is StepKind.MODEL_CALL for step in chain)
        else:
            called = bool(chain)
        if called:
            used = sum(1 for step in used_before if step.is_tool)
            conversation = _conversation(
                chain, offered, self.max_tool_calls, self.keep_reasoning, used_before=used
            )
            body["messages"] = list(body.get("messages") or []) + conversation
            if _forced(body.get("tool_choice")):
                body["tool_choice"] = "auto"
        return body


_NOT_FOR_COMPACTION = frozenset(
    {
        "stream",
        "stream_options",
        "response_format",
        "logprobs",
        "top_logprobs",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
    }
)
"""Settings of the model call that a summary must not take: it is read whole, as plain
text, and may need more tokens than the request's answers."""


def _answered(messages: Sequence[Mapping[str, Any]], chain: Sequence[ChainStep]) -> list[Any]:
    """``messages`` with the ``tool`` messages the chain's leading tool steps answer
    given those steps' outputs (an approved call's result, where the request holds a
    placeholder until the call ran)."""
    outputs: dict[str, str] = {}
    for step in chain:
        if step.kind is StepKind.MODEL_CALL:
            break
        if step.is_tool and step.state.is_terminal:
            outputs[str(step.request_payload.get("call_id"))] = tool_output_text(step)
    if not outputs:
        return list(messages)
    return [
        {**message, "content": outputs[message["tool_call_id"]]}
        if message.get("role") == "tool" and message.get("tool_call_id") in outputs
        else message
        for message in messages
    ]


def _last_index(chain: Sequence[ChainStep], kind: StepKind) -> int | None:
    for index in range(len(chain) - 1, -1, -1):
        if chain[index].kind is kind:
            return index
    return None


def _chat_tool_name(tool: object) -> str:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) else ""


@attrs.frozen
class _Prefix:
    """The messages a chain's steps up to the end of one round added, and what they were
    built from: the steps ``before`` the model step that keys it in :data:`_PREFIXES`,
    the steps ``after`` it, and every other input of :func:`_conversation`. The key step
    itself is not held here, so the entry does not keep it alive."""

    before: tuple[ChainStep, ...]
    after: tuple[ChainStep, ...]
    server_tools: frozenset[str]
    max_tool_calls: int | None
    keep_reasoning: bool
    used: int  # server-side calls run in those rounds, against max_tool_calls
    messages: tuple[dict[str, Any], ...]

    @property
    def size(self) -> int:
        return len(self.before) + 1 + len(self.after)

    def starts(
        self,
        chain: Sequence[ChainStep],
        server_tools: frozenset[str],
        max_tool_calls: int | None,
        keep_reasoning: bool,
    ) -> bool:
        """Whether ``chain`` (whose step at ``len(before)`` is the key step) begins with
        these steps, and a new round (or nothing) comes after them, under the same inputs."""
        at, size = len(self.before), self.size
        return (
            size <= len(chain)
            and (size == len(chain) or chain[size].kind is StepKind.MODEL_CALL)
            and self.max_tool_calls == max_tool_calls
            and self.keep_reasoning is keep_reasoning
            and self.server_tools == server_tools
            # Identical objects compare at C speed; equal ones translate the same anyway.
            and tuple(chain[at + 1 : size]) == self.after
            and tuple(chain[:at]) == self.before
        )


_PREFIXES: dict[int, tuple[weakref.ref[ChainStep], _Prefix]] = {}
"""The translated chains being decided, by the identity of their last model step.

A decision used to rebuild every earlier round's messages, so a response of ``n`` rounds
cost O(n²) in the transition. A chain only grows by new steps, and the messages of a
round depend on nothing but its steps and the inputs :class:`_Prefix` records, so the
translation of the chain so far is kept under its last model step and the next decision
translates only the rounds after it: O(new steps) per decision (beside a C-speed
comparison of the prefix). One entry per chain (extending it drops the one it came
from); an entry goes when its model step is collected.
"""


def _known_prefix(model_step: ChainStep) -> _Prefix | None:
    entry = _PREFIXES.get(id(model_step))
    return entry[1] if entry is not None and entry[0]() is model_step else None


def _remember_prefix(model_step: ChainStep, prefix: _Prefix) -> None:
    key, prefixes = id(model_step), _PREFIXES  # bound now: globals may be gone at exit

    def forget(ref: weakref.ref[ChainStep]) -> None:
        entry = prefixes.get(key)
        if entry is not None and entry[0] is ref:
            del prefixes[key]

    _PREFIXES[key] = (weakref.ref(model_step, forget), prefix)


def _forget_prefix(model_step: ChainStep) -> None:
    entry = _PREFIXES.get(id(model_step))
    if entry is not None and entry[0]() is model_step:
        del _PREFIXES[id(model_step)]


def _conversation(
    chain: Sequence[ChainStep],
    server_tools: Mapping[str, ToolSchema],
    max_tool_calls: int | None,
    keep_reasoning: bool,
    *,
    used_before: int = 0,
) -> list[dict[str, Any]]:
    """The messages the chain adds after the request's own: each model message, then an
    answer to every one of its tool calls under the call's own ``call_id``.
    ``server_tools`` are the server-side tools the model may call; a call of any other
    is answered as unavailable. ``used_before`` is the server-side calls run before
    ``chain`` (the part of the scope a compaction summarised). The translation of an
    earlier decision on the same chain is extended rather than redone
    (:data:`_PREFIXES`)."""
    names = frozenset(server_tools)
    base: _Prefix | None = None
    base_at = last_at = -1  # where the base's key step and the chain's last model step are
    for index in range(len(chain) - 1, -1, -1):
        step = chain[index]
        if step.kind is not StepKind.MODEL_CALL:
            continue
        if last_at < 0:
            last_at = index
        found = _known_prefix(step)
        if (
            found is not None
            and len(found.before) == index
            and found.starts(chain, names, max_tool_calls, keep_reasoning)
        ):
            base, base_at = found, index
            break
    if last_at < 0:
        return []  # no model step: no round
    done = base.size if base is not None else 0
    messages = list(base.messages) if base is not None else []
    used = base.used if base is not None else used_before + _leading_tool_calls(chain)
    for model_step, tool_steps in _rounds(chain[done:]):
        if model_step.state is not StepState.COMPLETED:
            continue
        messages += _round_messages(
            model_step, tool_steps, used, names, max_tool_calls, keep_reasoning
        )
        used += len(tool_steps)
    if base_at != last_at:
        before, after = tuple(chain[:last_at]), tuple(chain[last_at + 1 :])
        prefix = _Prefix(
            before, after, names, max_tool_calls, keep_reasoning, used, tuple(messages)
        )
        _remember_prefix(chain[last_at], prefix)
        if base_at >= 0:
            _forget_prefix(chain[base_at])
    return messages


def _leading_tool_calls(chain: Sequence[ChainStep]) -> int:
    """The tool calls run before the chain's first model call (approved calls), which
    count against ``max_tool_calls`` like any other."""
    count = 0
    for step in chain:
        if step.kind is StepKind.MODEL_CALL:
            break
        count += step.is_tool
    return count


def _rounds(chain: Sequence[ChainStep]) -> list[tuple[ChainStep, list[ChainStep]]]:
    """Each model step of the chain with the tool steps after it (tool steps before the
    first model step belong to no round)."""
    rounds: list[tuple[ChainStep, list[ChainStep]]] = []
    for step in chain:
        if step.kind is StepKind.MODEL_CALL:
            rounds.append((step, []))
        elif rounds and step.kind is not StepKind.COMPACTION:
            rounds[-1][1].append(step)
    return rounds


def _round_messages(
    model_step: ChainStep,
    tool_steps: Sequence[ChainStep],
    used: int,
    server_tools: frozenset[str],
    max_tool_calls: int | None,
    keep_reasoning: bool,
) -> list[dict[str, Any]]:
    """One completed model turn's messages: the model's message, then an answer to each of
    its tool calls; ``used`` is the server-side calls run in the rounds before it."""
    message = dict(model_message(model_step.response_payload))
    message.setdefault("role", "assistant")
    if not keep_reasoning:
        message.pop("reasoning_content", None)
        message.pop("reasoning", None)
    messages = [message]
    answers = steps_by_call_id(tool_steps)
    server_seen = 0
    for call in tool_calls_of(model_step.response_payload):
        queue = answers.get(call.call_id)
        tool_step = queue.pop(0) if queue else None
        if call.name in server_tools:
            server_seen += 1
        if tool_step is not None:
            content = tool_output_text(tool_step)
        elif call.name not in server_tools:
            content = _unavailable(call.name)
        elif max_tool_calls is not None and used + server_seen > max_tool_calls:
            content = _skipped(max_tool_calls)
        else:
            content = json.dumps({"error": "the tool call was not run"})
        messages.append({"role": "tool", "tool_call_id": call.call_id, "content": content})
    return messages
