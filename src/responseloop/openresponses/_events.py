"""The Responses stream events of a response, mapped from the loop's events (DESIGN §8).

Pure: no I/O. :class:`ResponsesEventMapper` turns each :class:`~responseloop.abc.LoopEvent`
into the wire events it stands for, as dicts ready to serialise; the SSE encoding and the
delivery to a reader are someone else's job.

One source of truth: every item the stream announces, and the Response its terminal event
carries, come from the assembly functions (:func:`output_items`,
:func:`assemble_response`) applied to the chain of steps. The mapper rebuilds that chain
from the loop's own events (``STEP_STARTED`` carries the payload the store records,
``STEP_COMPLETED``/``STEP_FAILED`` the result or error it records), so it needs no store
and the streamed Response is the one the non-streamed call assembles from the stored
chain. Chunks of a streamed model call only add early deltas: the items they open are
closed with the assembled item when the call completes.

Where the Open Responses spec and the official ``openai`` SDK (3.57) disagree, the SDK
wins, since it is what clients parse:

* reasoning deltas are ``response.reasoning_text.delta``/``.done`` (the SDK's names), not
  the spec's ``response.reasoning.delta``/``.done``, which the SDK's event union lacks
  (``WireOptions(event_names="openresponses")`` sends the spec's names instead);
  asked for a summary (``reasoning.summary``), the reasoning streams instead as its one
  summary part (``response.reasoning_summary_part.added``,
  ``response.reasoning_summary_text.delta``/``.done``,
  ``response.reasoning_summary_part.done``: one name in both);
* ``logprobs`` on ``response.output_text.delta``/``.done`` is always sent: the SDK
  requires it, the spec makes it optional. It is ``[]`` unless the request's ``include``
  asks for ``message.output_text.logprobs``; then each delta carries the logprobs of the
  tokens it adds and ``.done`` all of the part's, each with the ``bytes`` the spec
  requires (the SDK's event ``Logprob`` does not declare them; it keeps them as an extra
  field);
* no ``obfuscation`` padding (optional in the spec, unknown to the SDK);
* ``response.function_call_arguments.done`` carries no ``name`` (the SDK has no field
  for it; the name is on the ``function_call`` item).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..abc._dialect import ToolCallDelta, UpstreamDialect
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._json import JSON
from ..abc._records import ResponseStatus
from ..abc._steps import ChainStep, Complete, Fail, StepState
from ._assembly import assemble_response, custom_input, output_items
from ._dialects import default_dialect
from ._item_kinds import call_id, in_progress, item_id
from ._request import ResponsesRequest
from ._wire import WireOptions

__all__ = ["ResponsesEventMapper"]

_TERMINAL_EVENTS = {
    ResponseStatus.COMPLETED: "response.completed",
    ResponseStatus.INCOMPLETE: "response.incomplete",
    ResponseStatus.FAILED: "response.failed",
}


@attrs.define
class _Part:
    """A content part opened while a model call streamed: where it is and what it holds."""

    index: int
    type: str  # "output_text", "refusal" or "reasoning_text"
    text: str = ""
    logprobs: int = 0  # how many token logprobs its deltas carried so far


@attrs.define
class _Item:
    """An output item announced with ``response.output_item.added``."""

    id: str
    type: str
    output_index: int
    call_id: str | None = None
    name: str = ""
    parts: dict[str, _Part] = attrs.Factory(dict)
    summary: _Part | None = None  # the reasoning summary part, once opened
    arguments: str = ""
    namespace: dict[str, str] = attrs.Factory(dict)  # {"namespace": …} of a namespaced call
    done: bool = False


@attrs.define
class _StreamedCall:
    """A tool call of a streamed model call, keyed by its chunk index."""

    item: _Item | None = None
    name: str | None = None
    pending_arguments: str = ""


@attrs.define
class _StreamedStep:
    """What the chunks of one top-level streamed model call opened so far."""

    sequence: int
    reasoning: _Item | None = None
    message: _Item | None = None
    calls: dict[int, _StreamedCall] = attrs.Factory(dict)
    held: bool = False  # a server-side call was seen: later calls open when it is answered


class ResponsesEventMapper:
    """Maps the loop events of one response to its Responses stream events.

    Feed it every :class:`~responseloop.abc.LoopEvent` of the response, in order; each call of
    :meth:`feed` returns the wire events (dicts) to send for it. Every event has ``type``
    and a ``sequence_number`` that strictly increases from 0 across the whole response.
    The stream opens with ``response.created`` and ``response.in_progress``, announces
    each output item with ``response.output_item.added`` (content parts and deltas in
    between) and closes it with ``response.output_item.done``, and ends with exactly one
    of ``response.completed``, ``response.incomplete`` or ``response.failed`` carrying
    the full Response. After that, :meth:`feed` returns nothing.

    Items, their ids and output indexes are those :func:`assemble_response` gives for the
    same chain, so a client rebuilding the Response from the stream gets the non-streamed
    Response. Streamed model calls are mapped delta by delta; unstreamed ones (no
    ``MODEL_CHUNK`` events) are announced when they complete, each text in one delta.
    A server-side tool call is one ``mcp_call`` item, announced once its tool answered
    (``response.output_item.added``, ``response.mcp_call_arguments.delta``/``.done``,
    ``response.mcp_call.in_progress``, ``response.mcp_call.completed``/``.failed``,
    ``response.output_item.done``), in call order; the calls after it in its turn wait for
    it. With ``WireOptions(server_tool_items="function_call")`` its outputs are
    ``function_call_output`` items after the turn's calls, in call order, as soon as the
    earlier calls of the turn are answered. Sub-agent steps
    (``depth > 0``) send nothing (the wire has no place for them) but their model calls
    count in ``usage``.

    A streamed model call whose chunks come out of the usual order (reasoning, then
    text, then refusal, then tool calls by index) still gets a well-formed stream, but
    items and parts are numbered in the order they were opened, so an ``output_index`` or
    ``content_index`` may differ from the place in the Response; the terminal event's
    Response is always the assembled one. Items that chunks opened but the finished call
    does not hold (a call that failed mid-stream) end ``incomplete``.

    Args:
        request: the parsed request the Response echoes.
        response_id: the ``resp_…`` id; item ids derive from it.
        created_at: unix seconds when the response was created.
        clock: gives unix seconds for ``completed_at`` when the response completes;
            without one ``completed_at`` is left out. The mapper never reads a clock itself.
        prior: the stored chain (every scope) of a response resumed by a new loop run,
            whose finished steps will send no events again; their items are sent right
            after ``response.in_progress``. Leave it empty for a new response.
        dialect: the format of the model steps' payloads and chunks (the upstream's).
        wire: how the wire is spoken (default: :class:`WireOptions`'s defaults).
    """

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        response_id: str,
        created_at: int,
        clock: Callable[[], int] | None = None,
        prior: Sequence[ChainStep] = (),
        dialect: UpstreamDialect | None = None,
        wire: WireOptions | None = None,
    ) -> None:
        self._request = request
        self._dialect = default_dialect(dialect)
        self._wire = wire or WireOptions()
        self._part_events = (
            _SPEC_PART_EVENTS if self._wire.event_names == "openresponses" else _PART_EVENTS
        )
        self._response_id = response_id
        self._created_at = created_at
        self._clock = clock
        self._steps: dict[str, ChainStep] = {step.id: step for step in prior}
        self._items: dict[str, _Item] = {}
        self._streamed: dict[str, _StreamedStep] = {}
        self._next_index = 0
        self._sequence = 0
        self._started = False
        self._response: dict[str, Any] | None = None

    @property
    def chain(self) -> list[ChainStep]:
        """The steps seen so far, every scope, ordered by sequence, as the store lists
        them (``prev_step_id`` is the step before in the same scope)."""
        ordered = sorted(self._steps.values(), key=lambda step: step.sequence)
        last_in_scope: dict[str | None, str] = {}
        chain: list[ChainStep] = []
        for step in ordered:
            chain.append(attrs.evolve(step, prev_step_id=last_in_scope.get(step.scope)))
            last_in_scope[step.scope] = step.id
        return chain

    @property
    def response(self) -> dict[str, Any] | None:
        """The Response the terminal event carried, or ``None`` before it."""
        return self._response

    @property
    def next_sequence_number(self) -> int:
        """The ``sequence_number`` the next event will carry (for an event a caller adds
        to the stream itself, such as an ``error`` event)."""
        return self._sequence

    @property
    def finished(self) -> bool:
        """Whether the terminal event was sent."""
        return self._response is not None

    def continue_after(self, logged: Sequence[Mapping[str, Any]]) -> None:
        """Continue a stream an earlier run of this response sent (``logged``, its events
        in order, as the event log kept them): the next event is numbered after the last
        of them, and the items they announced count as sent, at their output indexes;
        those they did not close are closed when their steps settle, and the ``prior``
        steps' items they never announced are announced then.

        For a run that takes a response over from a worker that died or handed it over,
        so that the stream it writes carries on the one the earlier readers had.
        """
        self._started = True
        for event in logged:
            kind = event.get("type")
            item = event.get("item")
            if not isinstance(item, Mapping):
                continue
            if kind == "response.output_item.added":
                known = _Item(
                    id=str(item["id"]),
                    type=str(item["type"]),
                    output_index=int(event["output_index"]),
                    call_id=item.get("call_id"),
                    name=str(item.get("name", "")),
                    namespace={"namespace": item["namespace"]} if "namespace" in item else {},
                )
                self._items[known.id] = known
                self._next_index = max(self._next_index, known.output_index + 1)
            elif kind == "response.output_item.done" and item.get("id") in self._items:
                self._items[str(item["id"])].done = True
        if logged:
            self._sequence = int(logged[-1]["sequence_number"]) + 1

    def feed(self, event: LoopEvent) -> list[dict[str, Any]]:
        """The wire events that ``event`` stands for (often none, e.g. for a tool step
        that started, or anything after the terminal event).

        Raises:
            ValueError: ``event`` belongs to another response.
        """
        if event.response_id != self._response_id:
            raise ValueError(
                f"event of response {event.response_id!r} fed to the mapper of "
                f"{self._response_id!r}"
            )
        if self._response is not None:
            return []
        out: list[dict[str, Any]] = []
        if not self._started:
            self._start(out)
        kind = event.kind
        if kind is LoopEventKind.STEP_STARTED:
            self._step_started(event)
            self._announce_settled(out)
        elif kind is LoopEventKind.MODEL_CHUNK:
            if event.depth == 0 and event.step_id is not None:
                self._chunk(event.step_id, event.sequence, event.data, out)
        elif kind in (LoopEventKind.STEP_COMPLETED, LoopEventKind.STEP_FAILED):
            self._step_ended(event)
            self._announce_settled(out)
            # Whatever its chunks opened that the completed call does not hold ends here.
            self._close_stray(self._streamed.pop(event.step_id or "", None), out)
        elif kind is LoopEventKind.RESPONSE_COMPLETED:
            self._finish(Complete(event.data), out)
        elif kind is LoopEventKind.RESPONSE_FAILED:
            error = event.data if isinstance(event.data, Mapping) else {}
            self._finish(Fail(error), out)
        return out

    # -- the lifecycle ------------------------------------------------------------------

    def _emit(self, out: list[dict[str, Any]], type_: str, **fields: Any) -> None:
        out.append({"type": type_, "sequence_number": self._sequence, **fields})
        self._sequence += 1

    def _start(self, out: list[dict[str, Any]]) -> None:
        self._started = True

        def snapshot(status: ResponseStatus) -> dict[str, Any]:
            return assemble_response(
                [],
                self._request,
                response_id=self._response_id,
                created_at=self._created_at,
                outcome=status,
                dialect=self._dialect,
                wire=self._wire,
            )

        running = snapshot(ResponseStatus.IN_PROGRESS)
        if self._request.background:
            # A background response waited in the queue before it ran (its stored status
            # was ``queued``): the spec's stream says so before it goes in progress.
            queued = snapshot(ResponseStatus.QUEUED)
            self._emit(out, "response.created", response=queued)
            self._emit(out, "response.queued", response=queued)
        else:
            self._emit(out, "response.created", response=running)
        self._emit(out, "response.in_progress", response=running)
        self._announce_settled(out)

    def _finish(self, outcome: Complete | Fail, out: list[dict[str, Any]]) -> None:
        chain = self.chain
        for streamed in list(self._streamed.values()):
            self._close_stray(streamed, out)
        self._streamed.clear()
        response = assemble_response(
            chain,
            self._request,
            response_id=self._response_id,
            created_at=self._created_at,
            outcome=outcome,
            completed_at=self._clock() if self._clock is not None else None,
            dialect=self._dialect,
            wire=self._wire,
        )
        self._announce(response["output"], out)
        self._emit(out, _TERMINAL_EVENTS[ResponseStatus(response["status"])], response=response)
        self._response = response

    # -- the chain ----------------------------------------------------------------------

    def _step_started(self, event: LoopEvent) -> None:
        if event.step_id is None or event.step_kind is None:
            return
        payload = event.data if isinstance(event.data, Mapping) else {}
        self._steps[event.step_id] = ChainStep(
            id=event.step_id,
            kind=event.step_kind,
            state=StepState.PROCESSING,
            sequence=event.sequence,
            request_payload=payload,
            scope=event.scope,
        )

    def _step_ended(self, event: LoopEvent) -> None:
        step = self._steps.get(event.step_id or "")
        if step is None:
            return  # started before this mapper and not in ``prior``: nothing to pair it with
        if event.kind is LoopEventKind.STEP_COMPLETED:
            ended = attrs.evolve(step, state=StepState.COMPLETED, response_payload=event.data)
        else:
            error = dict(event.data) if isinstance(event.data, Mapping) else {}
            ended = attrs.evolve(step, state=StepState.FAILED, error=error)
        self._steps[step.id] = ended

    # -- items --------------------------------------------------------------------------

    def _announce_settled(self, out: list[dict[str, Any]]) -> None:
        items = output_items(
            self.chain,
            self._request,
            response_id=self._response_id,
            dialect=self._dialect,
            wire=self._wire,
        )
        self._announce(items, out)

    def _announce(self, items: Sequence[Mapping[str, Any]], out: list[dict[str, Any]]) -> None:
        """Send what is missing of ``items``: open items get closed with their final
        shape, unknown ones are announced whole; items already done are left alone."""
        for item in items:
            known = self._items.get(item["id"])
            if known is not None and (known.type, known.call_id) != _identity(item):
                # Chunks opened a different item under this id: end it, keep the real one.
                self._close_as_stray(known, out)
                del self._items[item["id"]]
                known = None
            if known is None:
                known = self._add(item, out)
            if not known.done:
                self._close(known, item, out)

    def _add(self, item: Mapping[str, Any], out: list[dict[str, Any]]) -> _Item:
        """Announce ``item`` with ``response.output_item.added``, as it looks in progress."""
        known = _Item(
            id=item["id"],
            type=item["type"],
            output_index=self._next_index,
            call_id=item.get("call_id"),
            name=str(item.get("name", "")),
            namespace={"namespace": item["namespace"]} if "namespace" in item else {},
        )
        self._items[known.id] = known
        self._next_index += 1
        self._emit(
            out,
            "response.output_item.added",
            output_index=known.output_index,
            item=in_progress(item),
        )
        return known

    def _close(self, known: _Item, item: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        """Finish ``known`` as ``item``: the rest of each text as one delta, then the
        ``.done`` events, each with the final value."""
        where = {"item_id": known.id, "output_index": known.output_index}
        if known.type in ("message", "reasoning"):
            for index, part in enumerate(item.get("content") or []):
                self._close_part(known, index, part, out)
            for part in item.get("summary") or []:
                self._close_summary(known, str(part.get("text", "")), out)
        elif known.type == "function_call":
            arguments = str(item.get("arguments", ""))
            if arguments.startswith(known.arguments) and len(arguments) > len(known.arguments):
                delta = arguments[len(known.arguments) :]
                self._emit(out, "response.function_call_arguments.delta", **where, delta=delta)
            self._emit(out, "response.function_call_arguments.done", **where, arguments=arguments)
        elif known.type == "custom_tool_call":
            # Its input is only known once the call is whole (the upstream streams it as
            # JSON arguments), so it comes as one delta.
            text = str(item.get("input", ""))
            if text:
                self._emit(out, "response.custom_tool_call_input.delta", **where, delta=text)
            self._emit(out, "response.custom_tool_call_input.done", **where, input=text)
        elif known.type == "compaction":
            # As OpenAI streams a compaction: the summary was sampled (its text is sealed,
            # so the event carries none).
            self._emit(out, "response.compaction.compacting", **where)
        elif known.type == "mcp_list_tools":
            self._emit(out, "response.mcp_list_tools.in_progress", **where)
            ended = "failed" if item.get("error") else "completed"
            self._emit(out, f"response.mcp_list_tools.{ended}", **where)
        elif known.type == "mcp_call":
            # As OpenAI streams a call its MCP server ran: the arguments, then the run.
            arguments = str(item.get("arguments", ""))
            if arguments:
                self._emit(out, "response.mcp_call_arguments.delta", **where, delta=arguments)
            self._emit(out, "response.mcp_call_arguments.done", **where, arguments=arguments)
            self._emit(out, "response.mcp_call.in_progress", **where)
            ended = "failed" if item.get("error") is not None else "completed"
            self._emit(out, f"response.mcp_call.{ended}", **where)
        self._emit(
            out, "response.output_item.done", output_index=known.output_index, item=dict(item)
        )
        known.done = True

    def _close_part(
        self, known: _Item, index: int, part: Mapping[str, Any], out: list[dict[str, Any]]
    ) -> None:
        kind = str(part.get("type"))
        text = str(part.get("refusal" if kind == "refusal" else "text", ""))
        opened = known.parts.get(kind)
        if opened is None:
            opened = self._open_part(known, kind, out, index)
        where = {
            "item_id": known.id,
            "output_index": known.output_index,
            "content_index": opened.index,
        }
        delta_type, done_type, done_field = self._part_events[kind]
        tokens = list(part.get("logprobs") or [])
        if text.startswith(opened.text) and len(text) > len(opened.text):
            rest = tokens[opened.logprobs :]
            self._emit(
                out, delta_type, **where, delta=text[len(opened.text) :], **_logprobs(kind, rest)
            )
        self._emit(out, done_type, **where, **{done_field: text}, **_logprobs(kind, tokens))
        self._emit(out, "response.content_part.done", **where, part=dict(part))

    def _open_summary(self, known: _Item, out: list[dict[str, Any]]) -> _Part:
        # This server makes one summary part per reasoning item: the model's reasoning.
        known.summary = _Part(index=0, type="summary_text")
        self._emit(
            out,
            "response.reasoning_summary_part.added",
            item_id=known.id,
            output_index=known.output_index,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )
        return known.summary

    def _summary_delta(self, known: _Item, text: str, out: list[dict[str, Any]]) -> None:
        if known.done:
            return
        part = known.summary or self._open_summary(known, out)
        part.text += text
        self._emit(
            out,
            "response.reasoning_summary_text.delta",
            item_id=known.id,
            output_index=known.output_index,
            summary_index=part.index,
            delta=text,
        )

    def _close_summary(self, known: _Item, text: str, out: list[dict[str, Any]]) -> None:
        """The rest of the summary as one delta, then its ``.done`` events."""
        part = known.summary or self._open_summary(known, out)
        if text.startswith(part.text) and len(text) > len(part.text):
            self._summary_delta(known, text[len(part.text) :], out)
        where = {
            "item_id": known.id,
            "output_index": known.output_index,
            "summary_index": part.index,
        }
        self._emit(out, "response.reasoning_summary_text.done", **where, text=text)
        self._emit(
            out,
            "response.reasoning_summary_part.done",
            **where,
            part={"type": "summary_text", "text": text},
        )

    def _open_part(
        self, known: _Item, kind: str, out: list[dict[str, Any]], index: int | None = None
    ) -> _Part:
        part = _Part(index=len(known.parts) if index is None else index, type=kind)
        known.parts[kind] = part
        self._emit(
            out,
            "response.content_part.added",
            item_id=known.id,
            output_index=known.output_index,
            content_index=part.index,
            part=_empty_part(kind),
        )
        return part

    def _close_as_stray(self, known: _Item, out: list[dict[str, Any]]) -> None:
        """End an item that chunks opened but the completed call does not hold (a failed
        call, or an upstream whose final body disagrees with its chunks)."""
        if known.done:
            return
        where = {"item_id": known.id, "output_index": known.output_index}
        parts = sorted(known.parts.values(), key=lambda part: part.index)
        content: list[dict[str, Any]] = []
        for part in parts:
            _delta, done_type, done_field = self._part_events[part.type]
            final = {**_empty_part(part.type), done_field: part.text}
            self._emit(
                out,
                done_type,
                **where,
                content_index=part.index,
                **{done_field: part.text},
                **_logprobs(part.type),
            )
            self._emit(
                out, "response.content_part.done", **where, content_index=part.index, part=final
            )
            content.append(final)
        item: dict[str, Any] = {"id": known.id, "type": known.type, "status": "incomplete"}
        if known.type == "message":
            item.update(role="assistant", content=content)
        elif known.type == "reasoning":
            summary: list[dict[str, Any]] = []
            if known.summary is not None:
                self._close_summary(known, known.summary.text, out)
                summary.append({"type": "summary_text", "text": known.summary.text})
            item.update(summary=summary, content=content)
        elif known.type == "custom_tool_call":
            text = custom_input(known.arguments)
            self._emit(out, "response.custom_tool_call_input.done", **where, input=text)
            item.update(call_id=known.call_id or "", name=known.name)
            item.update(known.namespace, input=text)
            del item["status"]  # the SDK declares custom_tool_call output items without it
        else:
            self._emit(
                out, "response.function_call_arguments.done", **where, arguments=known.arguments
            )
            item.update(call_id=known.call_id or "", name=known.name)
            item.update(known.namespace, arguments=known.arguments)
        self._emit(out, "response.output_item.done", output_index=known.output_index, item=item)
        known.done = True

    def _close_stray(self, streamed: _StreamedStep | None, out: list[dict[str, Any]]) -> None:
        if streamed is None:
            return
        opened = [streamed.reasoning, streamed.message]
        opened += [call.item for call in streamed.calls.values()]
        for known in opened:
            if known is not None:
                self._close_as_stray(known, out)

    # -- chunks of a streamed model call ------------------------------------------------

    def _chunk(self, step_id: str, sequence: int, chunk: JSON, out: list[dict[str, Any]]) -> None:
        streamed = self._streamed.get(step_id)
        if streamed is None:
            step = self._steps.get(step_id)
            if step is None or step.state is not StepState.PROCESSING:
                return
            streamed = self._streamed[step_id] = _StreamedStep(sequence)
        delta = self._dialect.stream_delta(chunk)
        if delta.reasoning:
            self._reasoning_delta(streamed, delta.reasoning, out)
        if delta.text:
            tokens = delta.logprobs if self._request.wants_logprobs else ()
            self._message_delta(streamed, "output_text", delta.text, out, tokens)
        if delta.refusal:
            self._message_delta(streamed, "refusal", delta.refusal, out)
        for call in delta.tool_calls:
            self._call_delta(streamed, call, out)

    def _base(self) -> str:
        return self._response_id.removeprefix("resp_")

    def _open(self, item: dict[str, Any], out: list[dict[str, Any]]) -> _Item:
        known = self._items.get(item["id"])
        if known is not None:
            return known
        return self._add(item, out)

    def _reasoning_delta(
        self, streamed: _StreamedStep, text: str, out: list[dict[str, Any]]
    ) -> None:
        if streamed.reasoning is None:
            item = {
                "id": item_id("reasoning", self._base(), streamed.sequence),
                "type": "reasoning",
            }
            streamed.reasoning = self._open(item, out)
        if self._request.reasoning_summary:
            self._summary_delta(streamed.reasoning, text, out)
        else:
            self._part_delta(streamed.reasoning, "reasoning_text", text, out)

    def _message_delta(
        self,
        streamed: _StreamedStep,
        kind: str,
        text: str,
        out: list[dict[str, Any]],
        logprobs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if streamed.message is None:
            item = {"id": item_id("message", self._base(), streamed.sequence), "type": "message"}
            streamed.message = self._open(item, out)
        self._part_delta(streamed.message, kind, text, out, logprobs)

    def _part_delta(
        self,
        known: _Item,
        kind: str,
        text: str,
        out: list[dict[str, Any]],
        logprobs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if known.done:
            return
        part = known.parts.get(kind) or self._open_part(known, kind, out)
        part.text += text
        part.logprobs += len(logprobs)
        delta_type, _done, _field = self._part_events[kind]
        self._emit(
            out,
            delta_type,
            item_id=known.id,
            output_index=known.output_index,
            content_index=part.index,
            delta=text,
            **_logprobs(kind, logprobs),
        )

    def _holds(self, streamed: _StreamedStep, name: str) -> bool:
        """Whether a streamed call is announced only once the turn's items settle: a
        server-side call shown as ``mcp_call`` (one item, made when its tool answered),
        and every call after it, so output indexes stay the assembly's."""
        if self._wire.server_tool_items == "mcp_call" and name not in self._request.tool_names:
            streamed.held = True
        return streamed.held

    def _call_delta(
        self, streamed: _StreamedStep, call: ToolCallDelta, out: list[dict[str, Any]]
    ) -> None:
        key = call.index if call.index is not None else len(streamed.calls)
        state = streamed.calls.setdefault(key, _StreamedCall())
        if call.name is not None and state.name is None:
            state.name = call.name
        state.pending_arguments += call.arguments
        tool = self._request.client_tool(state.name or "") or {}
        if state.item is None and state.name is not None and self._holds(streamed, state.name):
            return
        if state.item is None and state.name is not None:
            # The id and call id assembly gives: the call's place among the calls of the
            # turn, which is its chunk index (the reassembled body lists the calls by that
            # index); the upstream's own call id stays inside the loop.
            kind = "custom_tool_call" if tool.get("custom") else "function_call"
            item = {
                "id": item_id(kind, self._base(), streamed.sequence, key),
                "type": kind,
                "call_id": call_id(self._base(), streamed.sequence, key),
                "name": str(tool.get("client_name", state.name)),
                **({"namespace": tool["namespace"]} if "namespace" in tool else {}),
            }
            state.item = self._open(item, out)
        known = state.item
        if known is not None and known.type == "custom_tool_call":
            # Its input is inside JSON arguments, known only once they are whole: it is
            # given when the item closes.
            known.arguments += state.pending_arguments
            state.pending_arguments = ""
        elif known is not None and state.pending_arguments and not known.done:
            delta, state.pending_arguments = state.pending_arguments, ""
            known.arguments += delta
            self._emit(
                out,
                "response.function_call_arguments.delta",
                item_id=known.id,
                output_index=known.output_index,
                delta=delta,
            )


# Per content-part type: its delta event, its done event, and the done event's text field.
_PART_EVENTS = {
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}
# WireOptions(event_names="openresponses"): the spec's names for the reasoning events.
_SPEC_PART_EVENTS = {
    **_PART_EVENTS,
    "reasoning_text": ("response.reasoning.delta", "response.reasoning.done", "text"),
}


def _logprobs(kind: str, tokens: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    # The SDK requires ``logprobs`` on text events (the spec makes it optional): the
    # tokens' logprobs when the request includes them, else an empty list.
    return {"logprobs": [dict(token) for token in tokens]} if kind == "output_text" else {}


def _empty_part(kind: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": "", "annotations": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": ""}
    return {"type": "reasoning_text", "text": ""}


def _identity(item: Mapping[str, Any]) -> tuple[str, str | None]:
    called = item.get("call_id")
    return str(item.get("type")), called if isinstance(called, str) else None
