"""The extension points: what a host implements (or takes from us) to run the loop.

Each is a :class:`typing.Protocol`: subclass it for clarity, or just duck-type it. Every
method documents the exceptions it may raise; the loop relies on those contracts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._config import LoopConfig, RequestContext
from ._events import LoopEvent
from ._http import HttpRequest, HttpResponse, ServerSentEvent
from ._json import JSON
from ._records import (
    ConversationContents,
    ConversationRecord,
    ResponseRecord,
    ResponseUpdate,
)
from ._steps import ChainStep, NextAction, RecordedStep, Scope, StepDescriptor, StepUpdate
from ._tools import ToolSchema

__all__ = [
    "AgentToolExecutor",
    "ApprovalStore",
    "CallerToolResolver",
    "ConversationStore",
    "EventSink",
    "HttpClient",
    "OnServerSentEvent",
    "ResponseStore",
    "StepAdvancingStore",
    "StepStartingStore",
    "ToolExecutor",
    "ToolListingExecutor",
    "ToolResolver",
    "Transition",
]


class OnServerSentEvent(Protocol):
    """Protocol: called with each server-sent event of a streamed upstream call, as it
    arrives; awaiting it is how a slow consumer slows the stream down.

    It returns ``True`` when that event was the stream's last word (a dialect's end
    marker, such as Chat Completions' ``[DONE]``): the client then hands on nothing more
    and ends the call. ``None`` or ``False`` reads on until the body ends.
    """

    async def __call__(self, event: ServerSentEvent, /) -> bool | None: ...


class HttpClient(Protocol):
    """Protocol: makes the upstream model calls, moving bytes and server-sent events.

    It knows no upstream format: the :class:`~responseloop.abc.UpstreamDialect` validates
    what it returns and reassembles what it streams. The default implementation is
    :class:`responseloop.HttpxClient`; tests use
    :class:`responseloop.testing.ScriptedChatModel`.

    A request is read-only to its client: its ``json`` is the step's own payload and its
    ``headers`` may be shared by every call to the same upstream, so a client that needs
    another body or more headers builds its own (``{**request.json, ...}``).
    """

    async def execute(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and return the upstream's 2xx response, its body as received.

        Raises:
            UpstreamStatusError: the upstream answered non-2xx (after any retries).
            UpstreamConnectionError: it could not be reached or timed out.
        """
        ...

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        """Send ``request`` expecting server-sent events, hand each to ``on_event`` as it
        arrives, and return the 2xx response's status and headers (no body: the events
        were it). Reading stops when ``on_event`` returns ``True`` or the body ends.

        What ``on_event`` raises propagates, after the stream is released.

        Raises:
            UpstreamStatusError: the upstream answered non-2xx.
            UpstreamConnectionError: it could not be reached, timed out or cut the stream.
            UpstreamProtocolError: the answer is not an event stream, or not decodable.
        """
        ...


class ToolExecutor(Protocol):
    """Protocol: the server-side tools of one caller, and how to run them."""

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The tools this executor offers for ``ctx``. Called once per scope."""
        ...

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Run tool ``name`` for the model's tool call ``call_id`` and return its JSON result.

        Raises:
            ToolNotFound: no such tool here.
            ToolArgumentsError: ``arguments`` do not fit the tool's schema.
            ToolExecutionError: the tool ran and failed.
            ToolTimeout: the tool ran out of time.

        Any other exception is treated as a :class:`ToolExecutionError` by the loop.
        """
        ...


@runtime_checkable
class AgentToolExecutor(ToolExecutor, Protocol):
    """Protocol: a :class:`ToolExecutor` offering tools of kind ``agent``, which also gives
    each one's sub-agent its own server-side tools.

    When an agent step starts its sub-loop, the loop asks the executor of the calling scope
    for the sub-agent's tools. An executor offering agent tools without this method gives
    its sub-agents no server-side tools.
    """

    async def sub_agent_tools(self, name: str, ctx: RequestContext) -> ToolExecutor | None:
        """The server-side tools of the sub-agent that agent tool ``name`` runs, or ``None``
        for none (also when this executor offers no agent tool ``name``)."""
        ...


@runtime_checkable
class ToolListingExecutor(ToolExecutor, Protocol):
    """Protocol: a :class:`ToolExecutor` whose tools include those of MCP servers a request
    declared, each listed by a ``tool_listing`` step of the response (the
    ``mcp_list_tools`` item the client sees).

    The loop runs a :attr:`~responseloop.abc.StepKind.TOOL_LISTING` step through
    :meth:`list_server_tools`; its result is the step's payload.
    """

    async def list_server_tools(self, server_label: str, ctx: RequestContext) -> JSON:
        """The tools server ``server_label`` offers the model, as ``{"tools": [{"name",
        "description", "input_schema", "annotations"}, …]}``.

        Raises:
            ToolNotFound: no server of that label here.
            ToolExecutionError: the server could not be reached or listed.
        """
        ...


class ToolResolver(Protocol):
    """Protocol: which server-side tools a caller may use with a model (the tenant boundary)."""

    async def resolve(self, api_key: str | None, model: str) -> ToolExecutor | None:
        """The tools ``api_key`` may use with ``model``, or ``None`` for none.

        Raises:
            Exception: any failure; adapters log it and run with no server tools.
        """
        ...


@runtime_checkable
class CallerToolResolver(ToolResolver, Protocol):
    """Protocol: a :class:`ToolResolver` that can also resolve a caller's tools from the
    caller identity stored with a response, without the caller's key.

    A response whose worker died is finished by another worker, which has the stored
    caller but never the key (no key is stored). With this method the service resumes it
    with the caller's own tools; a resolver without it gets such a response failed, never
    run with someone else's tools.
    """

    async def resolve_caller(self, caller: str | None, model: str) -> ToolExecutor | None:
        """The tools the caller stored as ``caller`` may use with ``model``, or ``None``."""
        ...


class ResponseStore(Protocol):
    """Protocol: persistence of responses and their steps, and nothing else.

    A scope is ``None`` (the top level of a response) or the id of the agent step whose
    sub-loop it is. Step sequences are allocated atomically per response, across scopes,
    starting at 1 and without gaps. Every method may raise :class:`StoreError` for a
    storage failure; those named below are the contract of the state machine.
    """

    async def create_response(self, record: ResponseRecord) -> None:
        """Store a new response. Raises :class:`ResponseExists` if the id is taken."""
        ...

    async def get_response(self, response_id: str) -> ResponseRecord:
        """The stored response. Raises :class:`ResponseNotFound`."""
        ...

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        """Record how the response ended, or reopen it, as ``update`` says.

        :meth:`ResponseUpdate.finished` stores the terminal status and assembled JSON; a
        response stored with ``store=False`` is deleted instead, with all its steps (see
        :class:`ResponseRecord`). :meth:`ResponseUpdate.reopened` sets it back to
        ``in_progress`` with no assembled JSON and never deletes it.

        With ``fence`` (the claimant whose lease the writer holds), the write happens only
        while ``fence`` still holds the response's lease, checked in the same atomic
        operation; this is the same for every fenced write below.

        Raises:
            ResponseNotFound: no such response.
            LeaseLost: ``fence`` was given and another claimant holds the lease, or none
                does; nothing was written.
        """
        ...

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        """Take, or renew, the lease that lets ``claimant`` run the response.

        Atomically: when the response has no lease, its lease has expired, or ``claimant``
        already holds it, ``claimant`` becomes the holder until ``lease_seconds`` from now
        and the answer is ``True``; while another claimant's lease is live it is ``False``
        and nothing changes. Raises :class:`ResponseNotFound`.

        The claimant is the fencing token: each run claims under a name of its own, so a
        write fenced by it (``fence=``) is refused once another run took the lease over.
        """
        ...

    async def release_response(self, response_id: str, claimant: str) -> None:
        """Give up ``claimant``'s lease so another worker may run the response at once.

        Does nothing when ``claimant`` does not hold the lease (it expired and was taken
        over) or the response no longer exists (a finalised ``store=False`` response). A
        released response that has not ended is at once among :meth:`expired_responses`.
        """
        ...

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        """Ids of at most ``limit`` responses that have not ended (``queued`` or
        ``in_progress``) and that nobody runs: their lease expired or was released, or
        they were never claimed and were created over ``unclaimed_grace`` seconds ago.

        These are the responses a recovery sweep claims and finishes. Oldest lapse first;
        the cost is bounded by the live responses, never by the finished ones (an index on
        the live statuses).
        """
        ...

    async def request_cancel(self, response_id: str) -> None:
        """Mark the response as asked to be cancelled, for whichever worker runs it
        (:meth:`cancels_requested`). Raises :class:`ResponseNotFound`."""
        ...

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        """Which of ``response_ids`` have been asked to be cancelled (missing ones are
        left out): one call for all the responses a worker runs."""
        ...

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        """Append streamed events (each an encoded JSON object) to the response's event
        log, numbered ``first_sequence``, ``first_sequence + 1``, … .

        Appending a number already stored leaves the stored event as it is (a retried
        append is harmless). Events are deleted with their response.

        Raises:
            ResponseNotFound: no such response.
            LeaseLost: ``fence`` no longer holds the lease; nothing was written.
        """
        ...

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        """At most ``limit`` logged events numbered above ``after``, in order, as
        ``(sequence number, encoded event)``. Raises :class:`ResponseNotFound`."""
        ...

    async def delete_response(self, response_id: str) -> None:
        """Delete a response and all its steps. Raises :class:`ResponseNotFound`."""
        ...

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        """Insert ``step`` as ``pending`` and allocate its sequence in the same operation.

        Raises :class:`ResponseNotFound`, or :class:`LeaseLost` for a lost ``fence``.
        """
        ...

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        """Move a step to ``update.state``, storing its payload or error (every other move
        clears both), when :data:`responseloop.core.STEP_MOVES` allows the move from the
        step's current state; the check and the move are one atomic operation.

        Use :func:`responseloop.core.check_step_move` (or
        :func:`~responseloop.core.step_move_sources` in an SQL guard) for the rule.

        Raises :class:`StepNotFound`, :class:`StepStateError` for a move the table
        refuses (e.g. out of ``completed`` or ``failed``), or :class:`LeaseLost` for a lost
        ``fence``.
        """
        ...

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        """The steps of one scope in sequence order. Raises :class:`ResponseNotFound`."""
        ...


@runtime_checkable
class StepStartingStore(Protocol):
    """Protocol: a :class:`ResponseStore` that records steps and marks them ``processing``
    in one write (the three stores shipped here do).

    The loop records a step, marks it ``processing`` and then runs it; with this method
    the first two are one round trip and one transaction instead of two. A step the
    loop records this way is in flight from the moment it is stored, so a worker that
    dies before running it leaves it as it leaves any step in flight (re-fired on resume
    where :class:`~responseloop.LoopConfig` allows, ``step_abandoned`` where not), never
    as ``pending``. A store without it still carries the loop, one call per write.
    """

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Insert ``steps`` in order as ``processing``, the first linked after
        ``prev_step_id`` and each later one after the one before it, allocating their
        sequences, all in one atomic operation (all or none); answer them in order.

        Equivalent to :meth:`ResponseStore.record_step` for each step followed by
        :meth:`ResponseStore.update_step` to :meth:`StepUpdate.processing`, in one write.

        Raises :class:`ResponseNotFound`, or :class:`LeaseLost` for a lost ``fence``
        (nothing is written).
        """
        ...


@runtime_checkable
class StepAdvancingStore(StepStartingStore, Protocol):
    """Protocol: a :class:`StepStartingStore` that completes one step and starts the
    steps after it in one write (the three stores shipped here do).

    Between a step that ran alone and the steps the transition appends after it, the loop
    makes one store call and one transaction instead of two: the step's completion and
    the next steps' start land together. What a worker that dies in between leaves is
    what it leaves without this method (the step still ``processing``, re-fired on resume
    where :class:`~responseloop.LoopConfig` allows, ``step_abandoned`` where not); that
    window spans the transition's decision, which makes no call. The event sink hears of
    the completion once the write has landed, so a worker that dies while a slow sink
    holds it there leaves the next steps in flight, as one dying while they start does.
    """

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Move step ``completed_step_id`` to ``completed`` with ``payload``, then insert
        ``steps`` in order as ``processing``, the first linked after the completed step and
        each later one after the one before it, all in one atomic operation (all or
        none); answer the inserted steps in order.

        Equivalent to :meth:`ResponseStore.update_step` with
        :meth:`StepUpdate.completed` followed by
        :meth:`StepStartingStore.record_started_steps` after ``completed_step_id``, in one
        write.

        Raises :class:`StepNotFound`, :class:`StepStateError` for a step the move table
        does not let complete, :class:`ResponseNotFound`, or :class:`LeaseLost` for a lost
        ``fence`` (nothing is written).
        """
        ...


@runtime_checkable
class ConversationStore(Protocol):
    """Protocol: persistence of conversations, by a :class:`ResponseStore` that also keeps
    them (the three stores shipped here do).

    A conversation is a view over the stored item chains, never a second copy of them: its
    entries are, in order, references to the responses it is made of (their items are read
    from the stored responses) and the items added to it directly, which belong to no
    response. A separate protocol, so a host's own :class:`ResponseStore` without it still
    carries the loop (the conversation routes then answer that they are not offered); a
    store implementing it keeps conversations in the same database as its responses,
    since starting a turn is judged against the status of the running response.

    Every method may raise :class:`StoreError` for a storage failure, and
    :class:`ConversationNotFound` for a conversation that does not exist.
    """

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store a new conversation holding ``items`` (each with its ``id``) as its first
        entries, in one atomic operation; ``record.next_position`` is ignored (the stored
        one is ``len(items)``). Raises :class:`StoreError` if the id is taken."""
        ...

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        """The stored conversation."""
        ...

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        """Replace the conversation's metadata and return the record as it now stands."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None:
        """Delete the conversation with its entries and its hidden ids (the responses it
        referenced stay: they are resources of their own)."""
        ...

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        """The record, every entry in position order and the hidden item ids, read in one
        consistent snapshot."""
        ...

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        """Append ``items`` (each with its ``id``) as entries, atomically, and return the
        position of the first.

        Raises:
            ConversationLocked: the conversation's ``active_response`` exists and has not
                ended (checked in the same atomic operation); nothing was appended.
        """
        ...

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        """Append a reference to ``response_id`` and make it the ``active_response``, when
        nothing was appended since the caller read the conversation (its
        ``next_position`` is still ``expected_position``) and no other response is in
        use on it (the ``active_response`` is missing, has ended, or is ``response_id``:
        beginning a turn twice is a no-op). The check and the append are one atomic
        operation: that is what keeps two responses from sharing a turn.

        Raises:
            ConversationLocked: another response is live on it, or it changed since read.
        """
        ...

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        """Delete the item ``item_id`` from the conversation: an item added directly is
        removed; any other (an item of a referenced response) is recorded as hidden from
        the conversation, its response left untouched. Idempotent.

        Raises:
            ConversationLocked: the conversation's ``active_response`` exists and has not
                ended (checked in the same atomic operation); nothing was deleted.
        """
        ...


@runtime_checkable
class ApprovalStore(Protocol):
    """Protocol: the once-only claims of approved MCP calls, by a :class:`ResponseStore`
    that also keeps them (the three stores shipped here do).

    An approved call (an ``mcp_approval_response`` with ``approve: true``) runs in the
    response that carries the approval; the claim is what keeps a second response
    carrying the same approval (a retry on another branch of the chain, a concurrent
    request, a turn after one that failed) from running the call again. Judging that from
    the request's history alone cannot see a call run by a response that history does not
    continue.

    A separate protocol, so a host's own :class:`ResponseStore` without it still carries
    the loop: such a server then refuses approved calls with a 400, rather than risk
    running one twice. A claim lives in the same database as the responses, and outlives
    the response that owns it: a deleted response's call still ran.

    Every method may raise :class:`StoreError` for a storage failure.
    """

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        """Claim the approvals ``approval_request_ids`` of ``caller`` for response
        ``response_id``, all or none, and answer the owner of each claimed one (by id).

        Atomically, for all of them at once: when none is owned by another response, each
        becomes ``response_id``'s and the answer maps every id to ``response_id``
        (claiming again what ``response_id`` owns is a no-op, so a retry or recovery of the
        same response proceeds). When one is owned by another response, nothing is
        written and the answer maps the ids already owned to their owners (those nobody
        owns are left out). Approvals of different callers (``None`` is a caller of its
        own, distinct from ``""``) never share a claim.
        """
        ...


class Transition(Protocol):
    """Protocol: the pure decision function of a response (no I/O).

    The loop calls :meth:`decide` with the scope's chain whenever every step in it is
    terminal, and :meth:`sub_agent` when an agent tool's step starts its sub-loop. The
    default is :class:`responseloop.ChatTransition`.
    """

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        """The next action for ``scope``, given its chain so far (every step terminal)."""
        ...

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> Transition:
        """The transition of the sub-loop that agent tool ``tool`` runs for ``step``."""
        ...


class EventSink(Protocol):
    """Protocol: receives the loop's events for live streaming.

    ``emit`` should return promptly; it may wait for a bounded buffer to drain, which is
    how a slow reader slows the loop instead of growing memory. It gets the streamed
    kinds of :class:`LoopEventKind`; the lifecycle kinds of the same vocabulary go to the
    synchronous :class:`~responseloop.observe.LoopObserver`, which may not wait.
    """

    async def emit(self, event: LoopEvent) -> None:
        """Take one event. Raises :class:`EventSinkError` when the consumer is gone; the
        loop then stops emitting to this sink and carries on."""
        ...
