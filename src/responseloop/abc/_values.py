"""The values the loop, the stores and the protocols exchange.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import attrs

from ..exceptions import UpstreamStatusError

__all__ = [
    "JSON",
    "AgentSpec",
    "AppendSteps",
    "ChainStep",
    "Complete",
    "Fail",
    "HttpRequest",
    "HttpResponse",
    "LoopConfig",
    "LoopEvent",
    "LoopEventKind",
    "NextAction",
    "RecordedStep",
    "RequestContext",
    "ResponseRecord",
    "ResponseStatus",
    "ResponseUpdate",
    "Scope",
    "ServerSentEvent",
    "StepDescriptor",
    "StepKind",
    "StepState",
    "StepUpdate",
    "ToolKind",
    "ToolSchema",
    "UpstreamTarget",
]

JSON: TypeAlias = Any
"""A JSON value as :func:`json.loads` returns it (dict, list, str, int, float, bool, None)."""

_T = TypeVar("_T")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value is not None else {}


def _str_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _type_mapping(value: Mapping[type, object]) -> Mapping[type, object]:
    return dict(value)


def _descriptors(value: Iterable[StepDescriptor]) -> Sequence[StepDescriptor]:
    return tuple(value)


class StepKind(enum.StrEnum):
    """What a step does: call the upstream model, or call a server-side tool."""

    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"


class StepState(enum.StrEnum):
    """Where a step is in its life: ``pending → processing → completed | failed | cancelled``."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the step will never change state again on its own."""
        return self in (StepState.COMPLETED, StepState.FAILED, StepState.CANCELLED)


class ResponseStatus(enum.StrEnum):
    """The status of a whole response, as the Responses API spells it."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the response is finished (successfully or not)."""
        return self not in (ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS)


class ToolKind(enum.StrEnum):
    """How the loop runs a server-side tool.

    ``FUNCTION`` tools are run through :meth:`ToolExecutor.execute`; ``AGENT`` tools make
    the loop recurse into a sub-loop scoped under the calling step.
    """

    FUNCTION = "function"
    AGENT = "agent"


@attrs.frozen
class AgentSpec:
    """What a sub-agent's transition runs with: its own instructions and model.

    ``model=None`` keeps the model of the calling scope. The sub-agent's server-side tools
    are not part of this value: the executor offering the agent tool gives them
    (:class:`~responseloop.abc.AgentToolExecutor`).
    """

    instructions: str | None = None
    model: str | None = None


@attrs.frozen
class ToolSchema:
    """A server-side tool as the model sees it, plus how the loop must run it.

    ``idempotent`` tools may be re-fired when a worker died while running them (only if
    :attr:`LoopConfig.refire_idempotent_tools` allows it). Agent tools carry their
    :class:`AgentSpec`.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, converter=_frozen_mapping
    )
    strict: bool = False
    kind: ToolKind = ToolKind.FUNCTION
    idempotent: bool = False
    agent: AgentSpec | None = None

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tool needs a non-empty name")
        if self.kind is ToolKind.AGENT and self.agent is None:
            raise ValueError(f"agent tool {self.name!r} needs an AgentSpec")

    def to_chat_tool(self) -> dict[str, Any]:
        """The tool in the Chat Completions ``tools`` array shape."""
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}


@attrs.frozen
class StepDescriptor:
    """A step the transition function asks the loop to run.

    Build them with :meth:`model_call` and :meth:`tool_call`, which check the payload's
    shape up front (a tool step without a name is a bug in the transition, caught here
    rather than as a step stuck in ``processing``).
    """

    kind: StepKind
    request_payload: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)

    def __attrs_post_init__(self) -> None:
        if self.kind is StepKind.TOOL_CALL:
            name = self.request_payload.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("a tool_call step needs a string 'name' in its payload")
            if not isinstance(self.request_payload.get("call_id"), str):
                raise ValueError("a tool_call step needs a string 'call_id' in its payload")

    @classmethod
    def model_call(cls, body: Mapping[str, Any]) -> StepDescriptor:
        """A call to the upstream model; ``body`` is the exact Chat Completions body."""
        return cls(StepKind.MODEL_CALL, body)

    @classmethod
    def tool_call(cls, name: str, call_id: str, arguments: JSON) -> StepDescriptor:
        """A call to server-side tool ``name`` for the model's tool call ``call_id``."""
        return cls(StepKind.TOOL_CALL, {"name": name, "call_id": call_id, "arguments": arguments})

    @property
    def tool_name(self) -> str | None:
        """The tool's name for tool steps, ``None`` for model calls."""
        name = self.request_payload.get("name") if self.kind is StepKind.TOOL_CALL else None
        return name if isinstance(name, str) else None


@attrs.frozen
class RecordedStep:
    """What :meth:`ResponseStore.record_step` returns: the new step's id and sequence."""

    id: str
    sequence: int


@attrs.frozen
class ChainStep:
    """One persisted step as :meth:`ResponseStore.list_chain` returns it.

    ``scope`` is ``None`` for the top level of a response, or the id of the agent step whose
    sub-loop this step belongs to. ``response_payload`` is set only for completed steps and
    ``error`` only for failed (or cancelled) ones.
    """

    id: str
    kind: StepKind
    state: StepState
    sequence: int
    request_payload: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    prev_step_id: str | None = None
    scope: str | None = None
    response_payload: JSON = None
    error: Mapping[str, Any] | None = None

    @property
    def tool_name(self) -> str | None:
        """The tool's name for tool steps, ``None`` for model calls."""
        name = self.request_payload.get("name") if self.is_tool else None
        return name if isinstance(name, str) else None

    @property
    def is_tool(self) -> bool:
        """Whether this is a tool step."""
        return self.kind is StepKind.TOOL_CALL


@attrs.frozen
class AppendSteps:
    """Run these steps next: one is a serial step, several are a concurrent fan-out."""

    steps: Sequence[StepDescriptor] = attrs.field(converter=_descriptors)

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ValueError("AppendSteps needs at least one step")


@attrs.frozen
class Complete:
    """Stop: the scope finished successfully with ``payload``."""

    payload: JSON = None


@attrs.frozen
class Fail:
    """Stop: the scope failed with ``error`` (``{"type", "code", "message", …}``)."""

    error: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)


NextAction: TypeAlias = AppendSteps | Complete | Fail
"""The transition function's verdict."""


@attrs.frozen
class Scope:
    """What the transition function knows about the scope it decides for.

    ``tools`` are the server-side tools available in this scope, by name.
    """

    response_id: str
    parent_step_id: str | None
    depth: int
    tools: Mapping[str, ToolSchema] = attrs.field(converter=_frozen_mapping)


@attrs.frozen
class RequestContext:
    """Who is asking, for which model, plus typed extensions the host adds.

    Extensions are keyed by their type, so a host can carry its own values to its own
    tools without stringly-typed lookups::

        ctx = RequestContext(model="m").with_extension(Tenant("acme"))
        ctx.extension(Tenant)  # Tenant("acme")
    """

    response_id: str = ""
    model: str | None = None
    caller: str | None = None
    extensions: Mapping[type, object] = attrs.field(factory=dict, converter=_type_mapping)

    def with_extension(self, value: object) -> RequestContext:
        """A copy carrying ``value`` under its own type (replacing an older one)."""
        return attrs.evolve(self, extensions={**self.extensions, type(value): value})

    def extension(self, kind: type[_T]) -> _T | None:
        """The extension of type ``kind``, or ``None``."""
        value = self.extensions.get(kind)
        return value if isinstance(value, kind) else None


@attrs.frozen
class UpstreamTarget:
    """Where model calls go: ``base_url + path``, with an optional bearer key.

    The key never appears in ``repr``. An empty key means no ``Authorization`` header.
    """

    base_url: str
    path: str = "/v1/chat/completions"
    api_key: str | None = attrs.field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The full URL of the chat-completions endpoint."""
        return self.base_url.rstrip("/") + "/" + self.path.lstrip("/")

    def headers(self) -> dict[str, str]:
        """The request headers this target needs (authorisation only when a key is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class LoopConfig:
    """Caps and policies of the loop. Every field has a safe default.

    Attributes:
        max_iterations: the most model calls one scope (the top level, or one sub-agent)
            may make. The default of 10 ends runaway tool ping-pong with a clear error.
        max_depth: the deepest sub-agent nesting; the top level is depth 0.
        max_tool_calls: the most server-side tool calls in a whole response, across all
            scopes (``None``: no cap). The operator's hard cap; the request's own
            ``max_tool_calls`` is a softer budget applied by the transition.
        step_timeout: seconds one step (a model call or a tool call) may take.
        response_timeout: seconds the whole loop may run before it fails the response.
        tool_errors: ``"feed_back"`` answers a failed tool to the model as an error output
            so it can recover; ``"fail"`` fails the response.
        unknown_tools: the same choice for a tool call naming a tool that is neither
            server-side for this caller nor a client function of the request.
        refire_model_calls: on resume, re-send a model call that a dead worker left in
            flight (model calls have no side effects, but they cost tokens).
        refire_idempotent_tools: on resume, re-run a tool that a dead worker left in flight
            when its schema says it is idempotent.
        event_buffer: how many stream events may wait for a slow reader before the loop
            waits for it (the bound that keeps memory flat).
        max_tool_output_bytes: the largest result a tool may return, measured as UTF-8
            (a string as is, anything else as JSON); a larger one fails the tool step with
            a ``tool_error`` instead of being stored and sent to the model (``None``: no
            cap). The default is 1 MiB.
        tool_exception_detail: what the tool's error says when a tool raises an exception
            that is not a :class:`~responseloop.exceptions.ToolError`: ``"type"`` (the
            default) names only the exception's class, since its text may carry internals the
            model and the stored response should not see; ``"message"`` adds the exception's text. A
            :class:`~responseloop.exceptions.ToolError`'s own message is always used as is.
        lease_seconds: how long the lease a run holds on its response lasts without being
            renewed. A running loop renews it every third of that, so only one worker runs
            a response at a time; when a worker dies, another may take the response over
            once its lease has expired. Keep it well above the longest pause a worker can
            suffer (a stalled worker that outlives its lease is stopped, not fenced).
    """

    max_iterations: int = attrs.field(default=10, validator=_positive)
    max_depth: int = attrs.field(default=8, validator=_non_negative)
    max_tool_calls: int | None = attrs.field(default=None, validator=_non_negative)
    step_timeout: float | None = attrs.field(default=None, validator=_positive)
    response_timeout: float | None = attrs.field(default=None, validator=_positive)
    tool_errors: Literal["feed_back", "fail"] = "feed_back"
    unknown_tools: Literal["feed_back", "fail"] = "feed_back"
    refire_model_calls: bool = False
    refire_idempotent_tools: bool = False
    event_buffer: int = attrs.field(default=256, validator=_positive)
    max_tool_output_bytes: int | None = attrs.field(default=1_048_576, validator=_positive)
    tool_exception_detail: Literal["type", "message"] = "type"
    lease_seconds: float = attrs.field(default=30.0, validator=_positive)


@attrs.frozen
class HttpRequest:
    """One upstream HTTP call. ``correlation_id`` is the step's id, sent as a header.

    Header values are hidden from ``repr`` (they carry the bearer key).
    """

    url: str
    json: JSON = None
    method: str = "POST"
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_str_mapping, repr=False)
    timeout: float | None = None
    correlation_id: str | None = None


@attrs.frozen
class HttpResponse:
    """An HTTP response: status, headers and the raw body."""

    status: int
    content: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_str_mapping)

    @classmethod
    def from_json(
        cls, status: int, value: JSON, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """A response whose body is ``value`` as compact JSON."""
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, {"content-type": "application/json", **(headers or {})})

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> JSON:
        """The body parsed as JSON (raises :class:`ValueError` when it is not JSON)."""
        return json.loads(self.content)


@attrs.frozen
class ServerSentEvent:
    """One server-sent event: its ``event`` name (``"message"`` by default) and ``data``."""

    data: str
    event: str = "message"
    id: str | None = None

    def json(self) -> JSON:
        """The data parsed as JSON."""
        return json.loads(self.data)


class LoopEventKind(enum.StrEnum):
    """What happened in the loop.

    Two consumers share this one vocabulary. The *streamed* kinds go to the
    :class:`EventSink` (the Open Responses event mapper turns them into wire events); the
    *lifecycle* kinds (``RUN_STARTED`` to ``UPSTREAM_RETRY``) go to the
    :class:`~responseloop.observe.LoopObserver`, for tracing and metrics.
    """

    RESPONSE_STARTED = "response_started"
    """Streamed: the response starts producing output."""
    STEP_STARTED = "step_started"
    """Streamed: a step is marked processing (``data`` is its request payload)."""
    MODEL_CHUNK = "model_chunk"
    """Streamed: one parsed upstream stream chunk (``data``)."""
    STEP_COMPLETED = "step_completed"
    """Streamed: a step completed and was recorded (``data`` is its result)."""
    STEP_FAILED = "step_failed"
    """Streamed: a step failed and was recorded (``data`` is its error JSON)."""
    RESPONSE_COMPLETED = "response_completed"
    """Streamed: the response completed (``data`` is the terminal payload)."""
    RESPONSE_FAILED = "response_failed"
    """Streamed: the response failed (``data`` is the error JSON)."""
    RUN_STARTED = "run_started"
    """Lifecycle: this worker holds the response's lease and starts (or resumes) running
    it; ``context`` is the request's context."""
    RUN_ENDED = "run_ended"
    """Lifecycle: the run ended with ``outcome``, or was broken off by ``error`` (a
    cancellation, a store failure, a lost lease); exactly one of the two is set."""
    STEP_RUN_STARTED = "step_run_started"
    """Lifecycle: a recorded ``step`` starts running in ``step_scope`` (``step.state`` is
    ``pending``, or ``processing``/``cancelled`` when a worker re-fires it)."""
    STEP_RUN_ENDED = "step_run_ended"
    """Lifecycle: the ``step`` ended: its state is ``completed`` (with
    ``response_payload``) or ``failed`` (with its ``error``); or ``error`` is the exception
    that broke it off (then ``step`` is as it started)."""
    UPSTREAM_RETRY = "upstream_retry"
    """Lifecycle: an upstream call failed with ``error`` (an ``UpstreamError``) on attempt
    ``attempt`` and is tried again after ``delay`` seconds; ``step_id`` is the model call
    it belongs to (``None`` outside the loop) and ``response_id`` is empty, the HTTP client
    does not know it."""


# Not slotted: a frozen slotted class sets each field through object.__setattr__, so the
# lifecycle fields would make every streamed event (one per model chunk) about 40% slower
# to build; a dict-backed one builds faster than the eight-field slotted one did, and the
# events alive at once are bounded by the stream's buffer.
@attrs.frozen(slots=False)
class LoopEvent:
    """One thing the loop did, in the order it did it.

    ``data`` depends on ``kind``: the step's request payload for ``STEP_STARTED``, one
    parsed upstream stream chunk for ``MODEL_CHUNK``, the step's result or error for
    ``STEP_COMPLETED``/``STEP_FAILED``, the terminal payload or error for the response
    events. ``scope`` and ``depth`` tell sub-agent events from top-level ones.

    The lifecycle kinds (see :class:`LoopEventKind`) carry what an observer needs as the
    loop has it, instead of JSON: ``context``, ``step`` and ``step_scope``, ``outcome``
    and ``error`` (an exception), ``attempt`` and ``delay``. Payloads (tool arguments,
    messages) are handed over unfiltered: an observer that exports them is responsible
    for what it exports.
    """

    kind: LoopEventKind
    response_id: str
    data: JSON = None
    step_id: str | None = None
    step_kind: StepKind | None = None
    sequence: int = 0
    scope: str | None = None
    depth: int = 0
    context: RequestContext | None = None
    step: ChainStep | None = None
    step_scope: Scope | None = None
    outcome: Complete | Fail | None = None
    error: BaseException | None = None
    attempt: int = 0
    delay: float = 0.0

    @property
    def status(self) -> int | None:
        """The upstream's HTTP status of an ``UPSTREAM_RETRY``, or ``None`` (a connection
        failure, or another kind)."""
        return self.error.status if isinstance(self.error, UpstreamStatusError) else None


@attrs.frozen
class ResponseRecord:
    """A stored response: the request as received, who asked, and how it ended.

    ``request`` is the ``/v1/responses`` body (never the caller's API key); a turn that
    continued another also carries, under ``responseloop_conversation``, the conversation
    the turn after it continues (see :func:`~responseloop.openresponses.stored_request`).
    ``response`` is the assembled Response JSON once finalised. ``caller`` is the owner
    identity the host uses for access checks.

    ``store`` is the request's ``store`` flag. ``store=False`` keeps the response only
    while it runs (its steps are what a resuming worker needs): finalising it deletes the
    record and every step, so afterwards it can be neither retrieved nor continued with
    ``previous_response_id``. The caller gets the assembled JSON from the run itself.
    """

    id: str
    request: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    model: str | None = None
    caller: str | None = None
    status: ResponseStatus = ResponseStatus.IN_PROGRESS
    created_at: int = 0
    response: JSON = None
    store: bool = True


@attrs.frozen
class StepUpdate:
    """One move of a stored step, as :meth:`ResponseStore.update_step` takes it.

    Build it with a named constructor; which moves are legal from which state is
    :data:`responseloop.core.STEP_MOVES`. ``payload`` is the step's result (completed
    only) and ``error`` its error (failed only); every other move clears both.
    """

    state: StepState = attrs.field()
    payload: JSON = None
    error: JSON = None

    @classmethod
    def processing(cls) -> StepUpdate:
        """Start the step (or start it again, when a worker re-fires it)."""
        return cls(StepState.PROCESSING)

    @classmethod
    def completed(cls, payload: JSON) -> StepUpdate:
        """Finish the step with its result ``payload``."""
        return cls(StepState.COMPLETED, payload=payload)

    @classmethod
    def failed(cls, error: JSON) -> StepUpdate:
        """Finish the step with ``error``."""
        return cls(StepState.FAILED, error=error)

    @classmethod
    def cancelled(cls) -> StepUpdate:
        """Give the step up: nothing will run it to its end."""
        return cls(StepState.CANCELLED)

    @state.validator
    def _check(self, attribute: attrs.Attribute[StepState], value: StepState) -> None:
        if value is StepState.PENDING:
            raise ValueError("a step is pending only when recorded; no update moves it back")
        if self.payload is not None and value is not StepState.COMPLETED:
            raise ValueError(f"only a completed step has a payload, not a {value.value} one")
        if self.error is not None and value is not StepState.FAILED:
            raise ValueError(f"only a failed step has an error, not a {value.value} one")


@attrs.frozen
class ResponseUpdate:
    """A change of a stored response's outcome, as :meth:`ResponseStore.update_response`
    takes it: :meth:`finished` records how it ended, :meth:`reopened` makes a finished
    response run again."""

    status: ResponseStatus = attrs.field()
    response: JSON = None

    @classmethod
    def finished(cls, status: ResponseStatus, response: JSON) -> ResponseUpdate:
        """The response ended with terminal ``status`` and the assembled ``response`` JSON."""
        if not status.is_terminal:
            raise ValueError(f"a finished response has a terminal status, not {status.value}")
        return cls(status, response)

    @classmethod
    def reopened(cls) -> ResponseUpdate:
        """The response runs again (``in_progress``, no assembled JSON): a host's retry of
        a response that failed on a retryable upstream error."""
        return cls(ResponseStatus.IN_PROGRESS)

    @property
    def finishes(self) -> bool:
        """Whether this update finishes the response (else it reopens it)."""
        return self.status.is_terminal

    @status.validator
    def _check(self, attribute: attrs.Attribute[ResponseStatus], value: ResponseStatus) -> None:
        if not value.is_terminal and (
            value is not ResponseStatus.IN_PROGRESS or self.response is not None
        ):
            raise ValueError("a reopened response is in_progress with no assembled JSON")
