"""ResponsesService: the Responses API over a store, an upstream and tools.

Every adapter (the queue seam, the httpx2 transport, the ASGI app) routes to one of these,
so validation, tool resolution, continuation, running, assembly and finalisation are
written once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import anyio
import attrs

from ._conversations import Conversations, ConversationTurn
from ._ids import random_id
from .abc._config import LoopConfig, RequestContext, UpstreamTarget
from .abc._json import JSON
from .abc._protocols import (
    ApprovalStore,
    CallerToolResolver,
    EventSink,
    HttpClient,
    ResponseStore,
    ToolExecutor,
    ToolResolver,
)
from .abc._records import ResponseRecord, ResponseStatus, ResponseUpdate
from .abc._steps import ChainStep, Complete, Fail, Scope, StepState, StepUpdate
from .chat._responses import ResponsesTransition
from .exceptions import (
    ConversationLocked,
    InvalidRequestError,
    LeaseLost,
    ResponseAlreadyRunning,
    ResponseExists,
    ResponseLoopError,
    ResponseNotFound,
    ServerShuttingDown,
    StepAbandoned,
    StoreError,
    ToolError,
    UpstreamError,
)
from .http._httpx import HttpxClient
from .loop._driver import run_response_loop
from .loop._lease import LeaseKeeper
from .observe._observer import LoopObserver
from .openresponses._assembly import assemble_response
from .openresponses._continuation import continue_from
from .openresponses._items import input_items
from .openresponses._mcp import (
    ApprovedCall,
    approval_refusal,
    approved_calls,
    conversation_listings,
    redact_mcp_secrets,
    withheld_secrets,
)
from .openresponses._policy import (
    Conversation,
    continue_turn,
    earlier_turn_to_read,
    previous_turn,
    revival_step,
    stored_outcome,
    stored_request,
    submitted_body,
)
from .openresponses._references import (
    MAX_REFERENCED_RESPONSES,
    ReferableItems,
    model_turns,
    referable_items,
    replayed_ids,
    resolve_references,
    responses_to_read,
    restore_replayed,
    too_many_responses,
    unresolved_references,
)
from .openresponses._request import ResponsesRequest, parse_request
from .openresponses._sealing import (
    open_compaction_items,
    open_reasoning_items,
    require_sealing,
)
from .openresponses._wire import WireOptions
from .stores._memory import InMemoryStore

if TYPE_CHECKING:
    from .tools._declared_mcp import DeclaredMcpPolicy, DeclaredMcpTools

__all__ = ["Conversations", "PreparedResponse", "RunResult", "UpstreamOptions"]

logger = logging.getLogger("responseloop.service")


class UpstreamOptions(TypedDict, total=False):
    """The keywords of every ``to_upstream`` (:meth:`ResponsesService.to_upstream`,
    :meth:`~responseloop.ResponseLoopTransport.to_upstream`,
    :func:`~responseloop.asgi.app_to_upstream`), each optional.

    Attributes:
        api_key: the upstream's key (never the caller's).
        tools: server-side tools offered to every caller.
        resolver: chooses server-side tools per caller key instead of ``tools``.
        store: where responses live (default: an :class:`~responseloop.InMemoryStore`).
        config: the loop's caps and policies.
        http_client: makes the upstream calls (default: an
            :class:`~responseloop.HttpxClient` owned by what ``to_upstream`` builds).
        observer: sees every response and step, and the created client's retries.
        wire: how the Responses wire is spoken where clients differ.
    """

    api_key: str | None
    tools: ToolExecutor | None
    resolver: ToolResolver | None
    store: ResponseStore | None
    config: LoopConfig | None
    http_client: HttpClient | None
    observer: LoopObserver | None
    wire: WireOptions | None


# How much longer than a lease a cancel waits for a response running elsewhere to end.
_CANCEL_WAIT_MARGIN = 2.0


async def _resolved(tools: ToolExecutor | None) -> ToolExecutor | None:
    return tools


@contextlib.asynccontextmanager
async def _servers_open(declared: DeclaredMcpTools | None) -> AsyncIterator[None]:
    """The request's MCP servers open for the run (nothing to open without any)."""
    if declared is None:
        yield
        return
    async with declared:
        yield


_COMPACT_FIELDS = (
    "model",
    "instructions",
    "previous_response_id",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "tools",
    "parallel_tool_calls",
    "reasoning",
)
"""The fields of a ``/v1/responses/compact`` body its compaction is run with (the tools
so that the conversation's calls of them read as they did)."""

_NO_USAGE: Mapping[str, Any] = {
    "input_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 0,
}


def _user_message_item(item: Mapping[str, Any], default_id: str) -> dict[str, Any]:
    """A user message of the conversation as a compacted window lists it."""
    return {
        "id": item.get("id") or default_id,
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [dict(part) for part in item["content"]],
    }


def _new_response_id() -> str:
    return random_id("resp")


@attrs.frozen
class PreparedResponse:
    """A validated request with its stored record, ready to run (or already finished).

    ``finished`` is the stored record when the response had already ended: running it
    again returns that record instead of starting over.
    """

    response_id: str
    request: ResponsesRequest
    created_at: int
    caller: str | None
    api_key: str | None = attrs.field(repr=False)
    base_url: str | None = None
    finished: ResponseRecord | None = None
    tools: ToolExecutor | None = attrs.field(default=None, eq=False, repr=False)
    declared: DeclaredMcpTools | None = attrs.field(default=None, eq=False, repr=False)
    """The request's own MCP servers (part of ``tools``): the run opens them, in its own
    task, and closes them when it ends."""


@attrs.frozen
class RunResult:
    """How a run ended: the assembled (and stored) Response and the loop's outcome."""

    response: Mapping[str, Any]
    outcome: Complete | Fail | ResponseStatus

    @property
    def status(self) -> ResponseStatus:
        """The Response's status."""
        return ResponseStatus(self.response["status"])


@attrs.define
class _Running:
    scope: anyio.CancelScope
    done: anyio.Event = attrs.field(factory=anyio.Event)
    # Stopped to be finished elsewhere (the server is shutting down), not cancelled.
    handing_over: bool = False
    # Stopped because another worker took the response over (its lease was lost).
    lease_lost: bool = False

    def lose_lease(self) -> None:
        self.lease_lost = True
        self.scope.cancel()


class ResponsesService:
    """The Responses API over a store, an upstream and tools, for adapters to route to.

    Args:
        store: where responses and their steps live.
        http_client: makes the upstream model calls.
        upstream: the chat-completions endpoint and *its* key. The caller's key is used to
            resolve tools and never sent upstream.
        resolver: which server-side tools a caller's key may use with a model; ``None``
            gives no server-side tools.
        config: the loop's caps and policies.
        clock: unix seconds now (inject for exact timestamps in tests).
        new_response_id: makes ``resp_…`` ids.
        observer: handed the lifecycle events (each run and step starts and ends), for
            tracing and metrics (:class:`~responseloop.observe.LoopObserver`); pass it to
            the ``http_client`` too to see upstream retries.
        wire: how the Responses wire is spoken where clients differ
            (:class:`~responseloop.openresponses.WireOptions`).
        declared_mcp: where the MCP servers a request declares (``{"type": "mcp", …}``
            tools) may run (:class:`~responseloop.tools.mcp.DeclaredMcpPolicy`); ``None``
            refuses such requests with a 400.
        lease_keeper: renews the leases of every response this service runs from one
            task, while it is open (:class:`~responseloop.LeaseKeeper`; or open one with
            :meth:`keeping_leases`); without an open one, each run renews its own lease
            from a task of its own.
    """

    def __init__(
        self,
        *,
        store: ResponseStore,
        http_client: HttpClient,
        upstream: UpstreamTarget,
        resolver: ToolResolver | None = None,
        config: LoopConfig | None = None,
        clock: Callable[[], float] = time.time,
        new_response_id: Callable[[], str] = _new_response_id,
        observer: LoopObserver | None = None,
        wire: WireOptions | None = None,
        declared_mcp: DeclaredMcpPolicy | None = None,
        lease_keeper: LeaseKeeper | None = None,
    ) -> None:
        self.store = store
        self.lease_keeper = lease_keeper
        self.declared_mcp = declared_mcp
        self.http_client = http_client
        self.upstream = upstream
        self.resolver = resolver
        self.config = config or LoopConfig()
        self._clock = clock
        self._new_response_id = new_response_id
        self.observer = observer
        self.wire = wire or WireOptions()
        if self.wire.reasoning_key is not None:
            require_sealing()  # a missing extra shows now, not in the middle of a response
        self._running: dict[str, _Running] = {}
        self._draining = False
        self.conversations = Conversations(store, self.now)
        """The Conversations API over the same store (its store must be a
        :class:`~responseloop.abc.ConversationStore` for it to keep any)."""

    def __repr__(self) -> str:
        return f"<ResponsesService upstream={self.upstream.url!r} running={len(self._running)}>"

    @classmethod
    def to_upstream(
        cls, base_url: str, **options: Unpack[UpstreamOptions]
    ) -> tuple[ResponsesService, HttpxClient | None]:
        """A service running the loop against the chat-completions server at ``base_url``
        (``…/v1``; ``/chat/completions`` is added), with ``api_key`` as *its* key.

        ``tools`` are offered to every caller; pass a ``resolver`` instead to choose tools
        per caller key. The store defaults to an :class:`InMemoryStore`. Without an
        ``http_client`` an :class:`HttpxClient` is created (seeing ``observer``'s retries)
        and returned beside the service, for its caller to close; else ``None`` is. The
        keywords are :class:`UpstreamOptions`.
        """
        unknown = options.keys() - UpstreamOptions.__optional_keys__
        if unknown:
            raise TypeError(f"to_upstream() got unexpected keyword arguments: {sorted(unknown)}")
        tools, resolver = options.get("tools"), options.get("resolver")
        http_client, observer = options.get("http_client"), options.get("observer")
        store = options.get("store")
        if tools is not None and resolver is not None:
            raise ValueError("pass tools (for every caller) or a resolver, not both")
        if tools is not None:
            from .tools._resolvers import StaticToolResolver

            resolver = StaticToolResolver(tools)
        owned = None
        if http_client is None:
            owned = http_client = HttpxClient(observer=observer)
        service = cls(
            store=store if store is not None else InMemoryStore(),
            http_client=http_client,
            upstream=UpstreamTarget(base_url, "/chat/completions", options.get("api_key")),
            resolver=resolver,
            config=options.get("config"),
            observer=observer,
            wire=options.get("wire"),
        )
        return service, owned

    def _transition(self, request: ResponsesRequest) -> ResponsesTransition:
        return ResponsesTransition(
            request,
            replay_reasoning_as=self.wire.replay_reasoning_as,
            compaction_prompt=self.wire.compaction_prompt,
        )

    def _opened(self, request: ResponsesRequest) -> ResponsesRequest:
        """``request`` with its sealed items opened, so a tampered blob is a 400 before
        any work; one that compacts needs the key its summary is sealed under."""
        key = self.wire.reasoning_key
        if key is None and (request.compaction_trigger or request.compact_threshold):
            raise InvalidRequestError(
                "compaction needs the server's sealing key, and its operator has set none "
                "(WireOptions.reasoning_key, serve --reasoning-key-env)",
                param="input" if request.compaction_trigger else "context_management",
            )
        return open_compaction_items(open_reasoning_items(request, key), key)

    def now(self) -> int:
        """Unix seconds now, by the service's clock."""
        return int(self._clock())

    @contextlib.asynccontextmanager
    async def keeping_leases(self) -> AsyncIterator[LeaseKeeper]:
        """Renew the leases of every response this service runs from one task while
        inside (a :class:`~responseloop.LeaseKeeper` of its own, unless it was given an
        open one): what a worker running many responses at once should do for as long as
        it runs them. The ASGI app and ``responseloop serve`` do it in their lifespan."""
        given = self.lease_keeper
        if given is not None and given.running:
            yield given
            return
        async with LeaseKeeper() as keeper:
            self.lease_keeper = keeper
            try:
                yield keeper
            finally:
                self.lease_keeper = given

    @property
    def running(self) -> frozenset[str]:
        """Ids of the responses this service is running now (empty when idle)."""
        return frozenset(self._running)

    async def prepare(
        self,
        body: JSON,
        *,
        api_key: str | None,
        caller: str | None = None,
        response_id: str | None = None,
        base_url: str | None = None,
        earlier: Mapping[str, ResponseRecord] | None = None,
    ) -> PreparedResponse:
        """Validate ``body`` and store the response, or find it stored already.

        Nothing is sent upstream here, so a bad request costs nothing.

        ``earlier`` holds finished responses kept outside the store, by id (a WebSocket
        connection's last ``store: false`` response, which the store dropped when it
        ended): ``previous_response_id`` is looked up there before the store.

        Raises:
            InvalidRequestError: the body is invalid, or ``previous_response_id`` names
                a response that does not exist (for this caller) or has not ended, or an
                approval the request carries was used by another response (each approved
                MCP call runs once: :class:`~responseloop.abc.ApprovalStore`).
            ConversationLocked: another response runs on the request's conversation (also
                for a retry of a response whose turn never began).
            ServerShuttingDown: the service is draining (:meth:`drain`).
        """
        if self._draining:
            raise ServerShuttingDown("this server is shutting down: send the request again")
        return await self._prepare(
            body,
            caller=caller,
            response_id=response_id,
            base_url=base_url,
            api_key=api_key,
            tools_for=lambda model: self._resolve(api_key, model),
            earlier=earlier,
        )

    async def _prepare(
        self,
        body: JSON,
        *,
        caller: str | None,
        response_id: str | None,
        base_url: str | None,
        api_key: str | None,
        tools_for: Callable[[str], Awaitable[ToolExecutor | None]],
        earlier: Mapping[str, ResponseRecord] | None = None,
    ) -> PreparedResponse:
        request = parse_request(body, hosted_tools=self.wire.hosted_tools)
        response_id = response_id or self._new_response_id()
        existing = await self._find(response_id)
        if existing is not None and existing.caller != caller:
            raise InvalidRequestError(
                f"response {response_id!r} belongs to another caller", param="response_id"
            )
        stored_body = redact_mcp_secrets(body) if isinstance(body, Mapping) else body
        if existing is not None and submitted_body(existing.request) != submitted_body(stored_body):
            # A retry must be the same request: resuming a chain under another one would
            # mix two conversations in one response.
            raise ResponseExists(response_id)
        turn: ConversationTurn | None = None
        if request.conversation_id is not None:
            turn = await self._conversation_turn(request, caller, response_id, existing)
            request = continue_from(turn.history, request)
        request, conversation = await self._continued(request, caller, earlier or {})
        if turn is not None:
            conversation = None  # its history is the conversation's, read from there
        request = self._opened(request)
        # A request that cannot be translated fails here.
        transition = self._transition(request)
        tools = operator_tools = await tools_for(request.model)
        declared = self._declared(request)
        if declared is not None:
            from .tools._composite import CompositeToolExecutor

            tools = declared if tools is None else CompositeToolExecutor(tools, declared)
        ctx = RequestContext(response_id=response_id, model=request.model, caller=caller)
        # The operator's tools only: the declared servers are reached once the run opens
        # them, and the transition refuses a clash with their tools then.
        await self._refuse_outright(transition, operator_tools, ctx)
        approved = approved_calls(request.conversation)
        if approved and not isinstance(self.store, ApprovalStore):
            raise InvalidRequestError(
                "this server's store keeps no approval claims, so it runs no approved MCP"
                " calls (it could not tell whether another response ran one already)",
                param=self._approval_param(request, approved[0]),
            )
        if existing is None:
            created_at = self.now()
            await self.store.create_response(
                ResponseRecord(
                    id=response_id,
                    request=stored_request(stored_body, conversation),
                    model=request.model,
                    caller=caller,
                    # A background response waits for its runner: ``queued`` until it runs.
                    status=(
                        ResponseStatus.QUEUED if request.background else ResponseStatus.IN_PROGRESS
                    ),
                    created_at=created_at,
                    store=request.store,
                )
            )
            if turn is not None:
                await self._begin_turn(turn, response_id)
            await self._claim_approvals(request, caller, response_id, approved, created=True)
        else:
            created_at = existing.created_at
            if turn is not None and not turn.begun and not existing.status.is_terminal:
                # Stored, but its turn never began (its worker stopped between the two
                # writes): it runs only as its conversation's turn, with the lock that
                # keeps another off it.
                await self.conversations.begin(turn, response_id)
                turn = attrs.evolve(turn, active_response=response_id, begun=True)
            await self._claim_approvals(request, caller, response_id, approved, created=False)
            # A turn revives only while it is its conversation's latest: a later one has
            # continued without it, and its items may not be slipped in before that one's.
            latest = turn is None or turn.active_response == response_id
            if latest and await self._revive(existing):
                existing = attrs.evolve(existing, status=ResponseStatus.IN_PROGRESS)
        finished = existing if existing is not None and existing.status.is_terminal else None
        return PreparedResponse(
            response_id, request, created_at, caller, api_key, base_url, finished, tools, declared
        )

    async def _conversation_turn(
        self,
        request: ResponsesRequest,
        caller: str | None,
        response_id: str,
        existing: ResponseRecord | None,
    ) -> ConversationTurn:
        """The conversation ``request`` continues, read before anything is stored; a new
        response is refused at once while another runs on the conversation."""
        assert request.conversation_id is not None
        turn = await self.conversations.turn(
            request.conversation_id, caller=caller, response_id=response_id
        )
        if existing is None and turn.active_live and turn.active_response != response_id:
            raise ConversationLocked(request.conversation_id)
        return turn

    async def _begin_turn(self, turn: ConversationTurn, response_id: str) -> None:
        """Make the stored response the conversation's turn, or take it back: when another
        response got there first (or items were added since the conversation was read),
        this one was prepared on a history that is no longer the conversation's."""
        try:
            await self.conversations.begin(turn, response_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.delete_response(response_id)
            raise

    async def _claim_approvals(
        self,
        request: ResponsesRequest,
        caller: str | None,
        response_id: str,
        approved: Sequence[ApprovedCall],
        *,
        created: bool,
    ) -> None:
        """Make the stored response the one that runs its approved calls, once: each
        approval is claimed in the store for it (:class:`ApprovalStore`), all or none.

        The same response claiming again (a retry, a recovery) proceeds. When another
        response owns one, the request is refused, and the response is taken back when
        this call stored it; a claim is never given up, so the approval stays used by
        the response that ran (or runs) its call.

        Raises:
            InvalidRequestError: another response used one of the approvals already.
        """
        if not approved:
            return
        assert isinstance(self.store, ApprovalStore)
        try:
            owners = await self.store.claim_approvals(
                caller, [call.approval_request_id for call in approved], response_id
            )
            for call in approved:
                owner = owners.get(call.approval_request_id, response_id)
                if owner != response_id:
                    raise InvalidRequestError(
                        f"approval {call.approval_request_id!r} was already used by response"
                        f" {owner!r}: its call ran (or runs) there, and is never run twice",
                        param=self._approval_param(request, call),
                    )
        except BaseException:
            if created:
                # Taken back; a store failing to delete it leaves it to the recovery
                # sweep, which meets the same refusal and ends it failed.
                with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                    await self.store.delete_response(response_id)
            raise

    @staticmethod
    def _approval_param(request: ResponsesRequest, call: ApprovedCall) -> str:
        """Where the approval of ``call`` sits in the request (its last answer)."""
        index = max(
            i
            for i, item in enumerate(request.conversation)
            if item.get("type") == "mcp_approval_response"
            and item.get("approval_request_id") == call.approval_request_id
        )
        return f"{request.input_param(index)}.approval_request_id"

    def _declared(self, request: ResponsesRequest) -> DeclaredMcpTools | None:
        """The executor of the MCP servers ``request`` declares, once the operator's policy
        allowed each one, or ``None`` when it declares none.

        Raises:
            InvalidRequestError: the server runs no declared MCP servers, the policy
                refuses one, or an approval answers nothing or approves a call of a
                server the request does not declare.
        """
        conversation = request.conversation
        refusal = approval_refusal(
            conversation,
            frozenset(d.server_label for d in request.mcp_servers),
            request.input_param,
        )
        if refusal is not None:
            raise refusal
        if not request.mcp_servers:
            return None
        policy = self.declared_mcp
        if policy is None:
            raise InvalidRequestError(
                "this server runs no MCP servers a request declares (its operator has"
                " configured none)",
                param=f"{request.mcp_servers[0].param}.type",
            )
        from .tools._declared_mcp import DeclaredMcpTools

        # Building it asks the policy about each declaration (a refusal is a 400).

        return DeclaredMcpTools(
            request.mcp_servers, policy, listed=conversation_listings(conversation)
        )

    async def run(
        self,
        prepared: PreparedResponse,
        *,
        events: EventSink | None = None,
        on_claimed: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run a prepared response to its end, finalise it in the store and return it.

        Running a response that already ended returns it as stored. If the caller is
        cancelled, the response is stored as ``cancelled`` before the cancellation goes on;
        any other failure but the store's is stored as ``failed`` before it propagates (a
        store failure leaves the response to be resumed by a retry).

        ``on_claimed`` is called with the claimant of the response's lease once the run
        holds it: the fencing token for a store write made beside the run (an adapter's
        event log), refused once another worker took the response over.

        Raises:
            ResponseAlreadyRunning: the response runs already, here or on another worker.
            ServerShuttingDown: the service handed the response over while it ran
                (:meth:`hand_over_running`).
        """
        if prepared.finished is not None:
            return await self._stored_result(prepared.finished)
        response_id = prepared.response_id
        if response_id in self._running:
            raise ResponseAlreadyRunning(response_id)
        tools = prepared.tools
        ctx = RequestContext(
            response_id=response_id, model=prepared.request.model, caller=prepared.caller
        )
        upstream = self.upstream
        if prepared.base_url:
            upstream = attrs.evolve(upstream, base_url=prepared.base_url)
        # Registered before anything awaits, so a cancel or delete arriving now is seen.
        running = _Running(anyio.CancelScope())
        self._running[response_id] = running
        # The lease is the service's from the claim to the finalisation, and every write
        # in between is fenced by it: once another worker took the response over, nothing
        # of this run lands, not even its end.
        claimant = random_id("run")
        claimed = False
        outcome: Complete | Fail | ResponseStatus = ResponseStatus.CANCELLED
        keeper = (
            self.lease_keeper
            if self.lease_keeper is not None and self.lease_keeper.running
            else None
        )
        kept = contextlib.ExitStack()
        try:
            with running.scope:
                if not await self.store.claim_response(
                    response_id, claimant, self.config.lease_seconds
                ):
                    raise ResponseAlreadyRunning(response_id)
                claimed = True
                if keeper is not None:
                    # Kept from the claim to the finalisation; a lost lease stops the run
                    # at once, through the scope a cancel uses.
                    kept.enter_context(
                        keeper.hold(
                            self.store,
                            response_id,
                            claimant,
                            self.config.lease_seconds,
                            running.lose_lease,
                        )
                    )
                if on_claimed is not None:
                    on_claimed(claimant)
                record = await self.store.get_response(response_id)
                if record.status.is_terminal:
                    return await self._stored_result(record)  # cancelled while preparing
                if record.status is ResponseStatus.QUEUED:
                    await self.store.update_response(
                        response_id, ResponseUpdate.reopened(), fence=claimant
                    )
                async with _servers_open(prepared.declared):
                    outcome = await run_response_loop(
                        response_id,
                        store=self.store,
                        http_client=self.http_client,
                        upstream=upstream,
                        transition=self._transition(prepared.request),
                        tools=tools,
                        ctx=ctx,
                        config=self.config,
                        events=events,
                        observer=self.observer,
                        lease=claimant,
                        lease_keeper=keeper,
                    )
                if not running.handing_over:
                    # Inside the scope: a cancel landing while it finalises still wins.
                    return await self._finish(prepared, outcome, fence=claimant)
            if running.lease_lost:
                raise LeaseLost(response_id)
            outcome = ResponseStatus.CANCELLED
            if not claimed:
                # Cancelled before the lease was ours: the response must still end
                # cancelled, unless another worker runs it.
                if not await self.store.claim_response(
                    response_id, claimant, self.config.lease_seconds
                ):
                    raise ResponseAlreadyRunning(response_id)
                claimed = True
                record = await self.store.get_response(response_id)
                if record.status.is_terminal:
                    return await self._stored_result(record)
            if running.handing_over:
                # Left as it stands for another worker (or this one after a restart): its
                # steps keep what they stored, and the lease is released below.
                raise ServerShuttingDown(
                    f"this server is shutting down; response {response_id} is handed over"
                    " to be finished by another"
                )
            return await self._finish(prepared, outcome, fence=claimant)
        except (ResponseAlreadyRunning, StoreError, ServerShuttingDown) as exc:
            # Another worker owns it, the store is failing, or it is handed over: nothing
            # here may (or can) write to it. A store failure is transient: a retry (or a
            # sweep) resumes the response.
            if isinstance(exc, ResponseAlreadyRunning):
                claimed = claimed and not exc.taken_over
            raise
        except anyio.get_cancelled_exc_class():
            if claimed:
                with anyio.CancelScope(shield=True):
                    await self._finish_quietly(prepared, ResponseStatus.CANCELLED, claimant)
            raise
        except Exception as exc:
            error = (
                exc.to_error()
                if isinstance(exc, ResponseLoopError)
                else {
                    "type": "internal_error",
                    "code": "server_error",
                    "message": f"the response failed with {type(exc).__name__}",
                }
            )
            if claimed:
                with anyio.CancelScope(shield=True):
                    await self._finish_quietly(prepared, Fail(error), claimant)
            raise
        finally:
            kept.close()
            if claimed:
                with anyio.CancelScope(shield=True):
                    await self._release(response_id, claimant)
            if self._running.get(response_id) is running:
                del self._running[response_id]
            running.done.set()

    async def compact(
        self,
        body: JSON,
        *,
        api_key: str | None,
        caller: str | None = None,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/responses/compact``: the conversation of ``body`` (``input``, after
        ``previous_response_id``'s) compacted, as a ``response.compaction`` object whose
        ``output`` is the conversation's user messages, then one ``compaction`` item.

        It runs as an unstored response (``store: false``) ending with a
        ``compaction_trigger``, so its one compaction step is recorded and resumed like
        any other step; its ``id`` is that response's.

        Raises:
            InvalidRequestError: the body is invalid (see :meth:`prepare`).
            UpstreamError: the compaction failed.
        """
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be a JSON object", param=None)
        given = body.get("input")
        if isinstance(given, str):
            items: list[Any] = [{"type": "message", "role": "user", "content": given}]
        elif given is None:
            items = []
        elif isinstance(given, list):
            items = list(given)
        else:
            raise InvalidRequestError(
                "'input' must be a string or an array of items", param="input"
            )
        request_body = {key: body[key] for key in _COMPACT_FIELDS if key in body}
        request_body.update(input=[*items, {"type": "compaction_trigger"}], store=False)
        prepared = await self.prepare(
            request_body, api_key=api_key, caller=caller, base_url=base_url
        )
        result = await self.run(prepared)
        response = result.response
        if result.status is not ResponseStatus.COMPLETED:
            error = response.get("error") or {}
            raise UpstreamError(str(error.get("message") or "the compaction did not finish"))
        base = prepared.response_id.removeprefix("resp_")
        kept = [
            _user_message_item(item, f"msg_{base}_in{index}")
            for index, item in enumerate(prepared.request.conversation)
            if item["type"] == "message" and item.get("role") == "user"
        ]
        usage = response.get("usage") or _NO_USAGE
        return {
            "id": prepared.response_id,
            "object": "response.compaction",
            "created_at": prepared.created_at,
            "output": [*kept, *response["output"]],
            "usage": usage,
        }

    async def _release(self, response_id: str, claimant: str) -> None:
        try:
            await self.store.release_response(response_id, claimant)
        except StoreError:
            # Nothing is lost: the lease expires by itself, only a takeover waits longer.
            logger.warning(
                "could not release the lease of response %s",
                response_id,
                extra={"response_id": response_id},
            )

    async def cancel_running(self) -> None:
        """Cancel every response running here and return once each is stored as
        ``cancelled`` (what a server does as it shuts down)."""
        running = list(self._running.values())
        for run in running:
            run.scope.cancel()
        for run in running:
            await run.done.wait()

    async def retrieve(self, response_id: str, *, caller: str | None = None) -> Mapping[str, Any]:
        """The Response as it stands: the stored one once ended, else assembled from the
        chain so far with status ``in_progress``.

        Raises :class:`ResponseNotFound` (also for another caller's response).
        """
        record = await self._owned(response_id, caller)
        if record.status.is_terminal and record.response is not None:
            return dict(record.response)
        chain = await self.store.list_chain(response_id, None)
        return assemble_response(
            chain,
            parse_request(record.request),
            response_id=response_id,
            created_at=record.created_at,
            outcome=record.status,
            wire=self.wire,
        )

    async def input_items(
        self, response_id: str, *, caller: str | None = None
    ) -> list[dict[str, Any]]:
        """The response's own input items, in input order.

        Raises :class:`ResponseNotFound` (also for another caller's response).
        """
        record = await self._owned(response_id, caller)
        return input_items(parse_request(record.request), response_id)

    async def cancel(self, response_id: str, *, caller: str | None = None) -> Mapping[str, Any]:
        """Cancel a response: stop it if it runs here, else record it, and every step of
        it still in flight, as cancelled.

        A response that another worker runs is asked, through the store, to stop: that
        worker sees it within its ``cancel_poll_interval`` (:meth:`poll_cancels`) and
        stores it cancelled; this call waits for that, or, should that worker have died,
        for its lease to lapse and then cancels it itself (at most ``lease_seconds`` and a
        little more). A response that already ended is returned unchanged.

        Raises:
            ResponseNotFound: no such response (for this caller).
            ResponseAlreadyRunning: it still runs elsewhere after that wait.
        """
        record = await self._owned(response_id, caller)
        running = self._running.get(response_id)
        if running is not None:
            running.scope.cancel()
            await running.done.wait()
        elif not record.status.is_terminal:
            await self._cancel_elsewhere(record)
        return await self.retrieve(response_id, caller=caller)

    async def _cancel_elsewhere(self, record: ResponseRecord) -> None:
        """Cancel a response not running here: take its lease and record it cancelled, or,
        while another worker holds the lease, ask that worker through the store and wait
        until the response has ended."""
        response_id = record.id
        claimant = random_id("cancel")
        give_up = anyio.current_time() + self.config.lease_seconds + _CANCEL_WAIT_MARGIN
        asked = False
        pause = 0.05
        while True:
            # Take its lease first, so a worker running it elsewhere is never overruled
            # (it is asked instead), and a dead worker's response is closed here.
            if await self.store.claim_response(response_id, claimant, self.config.lease_seconds):
                try:
                    record = await self.store.get_response(response_id)
                    if not record.status.is_terminal:
                        await self._finish(
                            self._stored_prepared(record), ResponseStatus.CANCELLED, fence=claimant
                        )
                finally:
                    await self.store.release_response(response_id, claimant)
                return
            if not asked:
                await self.store.request_cancel(response_id)
                asked = True
            if anyio.current_time() >= give_up:
                raise ResponseAlreadyRunning(response_id)
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.5)
            if (await self.store.get_response(response_id)).status.is_terminal:
                return

    def _stored_prepared(self, record: ResponseRecord) -> PreparedResponse:
        """A stored response as prepared, for finalising it (not for running it)."""
        return PreparedResponse(
            record.id, parse_request(record.request), record.created_at, record.caller, None
        )

    # -- durability across workers --------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether the service has stopped taking work (:meth:`drain`)."""
        return self._draining

    def begin_draining(self) -> None:
        """Take no more work: :meth:`prepare` raises :class:`ServerShuttingDown` from now on,
        and :meth:`recoverable` finds nothing. Responses running here go on."""
        self._draining = True

    async def drain(self, grace: float) -> None:
        """Stop taking work, let the responses running here finish for up to ``grace``
        seconds, then hand the rest over (:meth:`hand_over_running`): what a server does
        as it shuts down, so no response is cancelled by a restart."""
        self.begin_draining()
        with anyio.move_on_after(grace):
            while self._running:
                await next(iter(self._running.values())).done.wait()
        await self.hand_over_running()

    async def hand_over_running(self) -> None:
        """Stop every response running here without ending it, and return once each has
        stopped: the steps it completed stay stored, a step it had in flight is recorded
        ``cancelled`` (and re-run, or the response failed ``step_abandoned``, by the rules
        of :func:`~responseloop.core.may_run_on_resume`), and its lease is released, so
        another replica's sweep (or this one's after a restart) finishes it at once. Its
        :meth:`run` raises :class:`ServerShuttingDown`."""
        running = list(self._running.values())
        for run in running:
            run.handing_over = True
            run.scope.cancel()
        for run in running:
            await run.done.wait()

    async def poll_cancels(self) -> list[str]:
        """Cancel the responses running here that were asked to be cancelled on another
        replica (:meth:`cancel`), and return their ids. One store call, none when nothing
        runs here; call it every ``cancel_poll_interval`` (the ASGI app does)."""
        running = list(self._running)
        if not running:
            return []
        asked = list(await self.store.cancels_requested(running))
        for response_id in asked:
            run = self._running.get(response_id)
            if run is not None:
                run.scope.cancel()
        return asked

    async def recoverable(
        self, *, limit: int = 100, unclaimed_grace: float | None = None
    ) -> list[PreparedResponse]:
        """Responses nobody runs any more (their worker died, or handed them over), each
        prepared to be run here with :meth:`run`; at most ``limit`` of them, oldest lapse
        first (:meth:`ResponseStore.expired_responses`).

        A response never claimed counts once it is ``unclaimed_grace`` seconds old
        (default: ``lease_seconds``). One that was asked to be cancelled is stored
        ``cancelled`` instead, and one that can no longer be run here (its caller's tools
        cannot be resolved without the key: the resolver is not a
        :class:`~responseloop.abc.CallerToolResolver`; its request no longer prepares) is
        stored ``failed`` with ``step_abandoned``; neither is returned. While draining
        this finds nothing.
        """
        if self._draining:
            return []
        grace = self.config.lease_seconds if unclaimed_grace is None else unclaimed_grace
        found: list[PreparedResponse] = []
        for response_id in await self.store.expired_responses(limit, unclaimed_grace=grace):
            if response_id not in self._running:
                prepared = await self._prepare_recovery(response_id)
                if prepared is not None:
                    found.append(prepared)
        return found

    async def recover_expired(
        self, *, limit: int = 100, unclaimed_grace: float | None = None
    ) -> list[str]:
        """Finish here the responses nobody runs any more (:meth:`recoverable`), running
        them side by side, and return their ids once each has ended or been taken by
        another worker. The call for a queue's workers to make at start-up and then
        periodically (every ``lease_seconds / 2`` or so); the ASGI app and
        ``responseloop serve`` do it themselves."""
        prepared = await self.recoverable(limit=limit, unclaimed_grace=unclaimed_grace)
        async with anyio.create_task_group() as group:
            for each in prepared:
                group.start_soon(self._run_recovered, each)
        return [each.response_id for each in prepared]

    async def _run_recovered(self, prepared: PreparedResponse) -> None:
        try:
            await self.run(prepared)
        except ResponseAlreadyRunning:
            pass  # another worker's sweep got there first
        except Exception as exc:
            # Stored as failed already (or left to the next sweep, for a store failure).
            logger.warning(
                "recovered response %s ended with %s",
                prepared.response_id,
                type(exc).__name__,
                extra={"response_id": prepared.response_id},
            )

    async def _prepare_recovery(self, response_id: str) -> PreparedResponse | None:
        try:
            record = await self.store.get_response(response_id)
        except ResponseNotFound:
            return None  # deleted meanwhile
        if record.status.is_terminal:
            return None
        if await self.store.cancels_requested([response_id]):
            await self._close_orphan(record, ResponseStatus.CANCELLED)
            return None
        model = record.model or ""
        try:
            if withheld_secrets(record.request):
                raise StepAbandoned(
                    "the worker running this response stopped, and the credentials of its"
                    " MCP servers were never stored"
                )
            tools = await self._recovered_tools(record.caller, model)
            prepared = await self._prepare(
                submitted_body(record.request),
                caller=record.caller,
                response_id=response_id,
                base_url=None,
                api_key=None,
                tools_for=lambda _model: _resolved(tools),
            )
        except (StepAbandoned, InvalidRequestError) as exc:
            await self._close_orphan(record, Fail(exc.to_error()))
            return None
        logger.info("recovering response %s", response_id, extra={"response_id": response_id})
        return prepared

    async def _recovered_tools(self, caller: str | None, model: str) -> ToolExecutor | None:
        if self.resolver is None:
            return None
        if not isinstance(self.resolver, CallerToolResolver):
            raise StepAbandoned(
                "the worker running this response stopped, and its server-side tools cannot"
                " be resolved without the caller's key (the ToolResolver has no"
                " resolve_caller)"
            )
        try:
            return await self.resolver.resolve_caller(caller, model)
        except Exception as exc:
            logger.warning(
                "tool resolution failed (%s) for a recovered response", type(exc).__name__
            )
            raise StepAbandoned(
                "the worker running this response stopped, and its caller's server-side"
                " tools could not be resolved"
            ) from exc

    async def _close_orphan(self, record: ResponseRecord, outcome: Fail | ResponseStatus) -> None:
        """End a response nobody runs (under a lease of its own, so a worker that took it
        meanwhile is never overruled)."""
        claimant = random_id("recover")
        if not await self.store.claim_response(record.id, claimant, self.config.lease_seconds):
            return
        try:
            await self._finish(self._stored_prepared(record), outcome, fence=claimant)
        finally:
            await self.store.release_response(record.id, claimant)

    async def delete(self, response_id: str, *, caller: str | None = None) -> None:
        """Delete a response and its steps, cancelling it first if it runs here.

        Raises :class:`ResponseNotFound`.
        """
        await self._owned(response_id, caller)
        running = self._running.get(response_id)
        if running is not None:
            running.scope.cancel()
            await running.done.wait()
        await self.store.delete_response(response_id)

    async def _finish(
        self,
        prepared: PreparedResponse,
        outcome: Complete | Fail | ResponseStatus,
        *,
        fence: str | None = None,
    ) -> RunResult:
        """Assemble the Response, close any step still unfinished, and finalise it."""
        steps = await self.all_steps(prepared.response_id)
        for step in steps:
            if step.state in (StepState.PENDING, StepState.PROCESSING):
                # Nothing runs this response any more: no step may stay in flight under
                # a terminal Response.
                await self.store.update_step(
                    prepared.response_id, step.id, StepUpdate.cancelled(), fence=fence
                )
        now = self.now()
        response = assemble_response(
            steps,
            prepared.request,
            response_id=prepared.response_id,
            created_at=prepared.created_at,
            outcome=outcome,
            completed_at=now if isinstance(outcome, Complete) else None,
            wire=self.wire,
        )
        status = ResponseStatus(response["status"])
        await self.store.update_response(
            prepared.response_id, ResponseUpdate.finished(status, response), fence=fence
        )
        logger.info(
            "response finished: %s",
            status.value,
            extra={"response_id": prepared.response_id},
        )
        return RunResult(response, outcome)

    async def _finish_quietly(
        self, prepared: PreparedResponse, outcome: Fail | ResponseStatus, fence: str | None
    ) -> None:
        """:meth:`_finish` on a path that is already failing: a store that fails too is
        logged, so the original error is the one that propagates."""
        try:
            await self._finish(prepared, outcome, fence=fence)
        except Exception:
            logger.warning(
                "could not finalise response %s",
                prepared.response_id,
                extra={"response_id": prepared.response_id},
            )

    async def _stored_result(self, record: ResponseRecord) -> RunResult:
        """The result of a response that already ended (:func:`stored_outcome`)."""
        last = await self._last_failed_step(record)
        return RunResult(record.response, stored_outcome(record.status, record.response, last))

    async def _revive(self, record: ResponseRecord) -> bool:
        """Re-open the response if a retry revives it (:func:`revival_step`)."""
        last = await self._last_failed_step(record)
        retry = revival_step(record.status, last)
        if last is None or retry is None:
            return False
        await self.store.record_step(record.id, None, last.id, retry)
        await self.store.update_response(record.id, ResponseUpdate.reopened())
        return True

    async def _last_failed_step(self, record: ResponseRecord) -> ChainStep | None:
        """The last top-level step of a failed response (what its policy depends on);
        ``None`` without reading the chain for any other status."""
        if record.status is not ResponseStatus.FAILED:
            return None
        chain = await self.store.list_chain(record.id, None)
        return chain[-1] if chain else None

    async def all_steps(self, response_id: str) -> list[ChainStep]:
        """Every step of the response: the top level and every sub-agent scope, however
        deep (their tokens count in usage)."""
        steps: list[ChainStep] = []
        pending: list[str | None] = [None]
        while pending:
            chain: Sequence[ChainStep] = await self.store.list_chain(response_id, pending.pop())
            steps += chain
            pending += [s.id for s in chain if s.is_tool]
        return steps

    async def _refuse_outright(
        self, transition: ResponsesTransition, tools: ToolExecutor | None, ctx: RequestContext
    ) -> None:
        """Ask the transition whether it refuses the request outright (a client tool named
        like a server-side one) before anything is stored, so that is a 400 that leaves
        nothing behind; the transition stays the one place that judges it."""
        if tools is None or not transition.request.tools:
            return  # only a request's own tools can be refused: no need to list the server's
        try:
            server = {schema.name: schema for schema in await tools.tools(ctx)}
        except ToolError:
            return  # the loop reports a tool source that cannot list its tools
        refusal = transition.refusal(Scope(ctx.response_id, None, 0, server))
        if refusal is not None:
            raise refusal

    async def _resolve(self, api_key: str | None, model: str) -> ToolExecutor | None:
        if self.resolver is None:
            return None
        try:
            return await self.resolver.resolve(api_key, model)
        except Exception as exc:
            # The tenant boundary failing closed: no server-side tools, never someone else's.
            # Only the error's type at WARNING: a resolver's message may quote the key.
            logger.warning(
                "tool resolution failed (%s); running with no server-side tools",
                type(exc).__name__,
            )
            logger.debug("tool resolution traceback", exc_info=True)
            return None

    async def _find(self, response_id: str) -> ResponseRecord | None:
        try:
            return await self.store.get_response(response_id)
        except ResponseNotFound:
            return None

    async def _owned(self, response_id: str, caller: str | None) -> ResponseRecord:
        record = await self.store.get_response(response_id)
        if record.caller != caller:
            raise ResponseNotFound(response_id)  # another caller's response is not there
        return record

    async def _continued(
        self,
        request: ResponsesRequest,
        caller: str | None,
        earlier: Mapping[str, ResponseRecord],
    ) -> tuple[ResponsesRequest, Conversation | None]:
        """``request`` with the conversation it continues (:func:`continue_turn`), and the
        conversation to store with it. One read: the previous turn carries the rest (kept
        in ``earlier`` or stored)."""
        read: list[ResponseRecord] = []
        previous_id = request.previous_response_id
        while previous_id is not None:
            record = earlier.get(previous_id) or await self._find(previous_id)
            read.append(previous_turn(record, previous_id, caller))
            previous_id = earlier_turn_to_read(read)
        request, conversation = continue_turn(request, read)
        sent = request
        # One read per response, and what it offers worked out once, shared by both.
        records: dict[str, ResponseRecord | None] = {}
        referable: dict[str, ReferableItems] = {}
        request = await self._referenced(request, caller, records, referable)
        request = await self._restored(request, caller, records, referable)
        if request is not sent:
            # The turn after this one continues what the model was shown: the references
            # resolved and the replay restored (also for a turn that continued none, which
            # else stores none).
            conversation = Conversation(
                request.conversation, conversation.turns if conversation else 0
            )
        return request, conversation

    async def _referenced(
        self,
        request: ResponsesRequest,
        caller: str | None,
        records: dict[str, ResponseRecord | None],
        referable: dict[str, ReferableItems],
    ) -> ResponsesRequest:
        """``request`` with the ``item_reference`` items its conversation left unresolved
        resolved against the caller's other stored responses: one read per response
        named, at most :data:`MAX_REFERENCED_RESPONSES` of them (``records`` keeps them,
        ``referable`` what each offers)."""
        references = unresolved_references(request)
        if not references:
            return request
        found: dict[str, Any] = {}
        for index, item_id in references:
            for response_id in responses_to_read(item_id):
                if item_id in found:
                    break
                if response_id not in records and len(records) >= MAX_REFERENCED_RESPONSES:
                    raise too_many_responses(request, index)
                offered = await self._referable(response_id, caller, records, referable)
                if item_id in offered:
                    found[item_id] = offered[item_id]
        return resolve_references(request, found)

    async def _restored(
        self,
        request: ResponsesRequest,
        caller: str | None,
        records: dict[str, ResponseRecord | None],
        referable: dict[str, ReferableItems],
    ) -> ResponsesRequest:
        """``request`` with what a client replaying its history left out of the items of
        the caller's stored responses put back (:func:`restore_replayed`). Reads share
        ``records`` and its cap with :meth:`_referenced`; past the cap, the items of the
        responses not read (the earliest sent) are left as sent."""
        stored: dict[str, Any] = {}
        turns: dict[str, Any] = {}
        done: set[str] = set()
        for item_id in replayed_ids(request):
            for response_id in responses_to_read(item_id):
                if item_id in stored or response_id in done:
                    continue
                if response_id not in records and len(records) >= MAX_REFERENCED_RESPONSES:
                    continue
                done.add(response_id)
                stored.update(await self._referable(response_id, caller, records, referable))
                turns.update(model_turns(records[response_id], caller))
        if not stored and not turns:
            return request
        return restore_replayed(request, stored, turns)

    async def _referable(
        self,
        response_id: str,
        caller: str | None,
        records: dict[str, ResponseRecord | None],
        referable: dict[str, ReferableItems],
    ) -> ReferableItems:
        """What the stored response ``response_id`` offers ``caller`` to reference, read
        and worked out once per request."""
        if response_id not in referable:
            record = await self._read_once(response_id, records)
            referable[response_id] = referable_items(record, caller)
        return referable[response_id]

    async def _read_once(
        self, response_id: str, records: dict[str, ResponseRecord | None]
    ) -> ResponseRecord | None:
        if response_id not in records:
            records[response_id] = await self._find(response_id)
        return records[response_id]
