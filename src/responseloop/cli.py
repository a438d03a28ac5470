"""The ``responseloop`` command: ``responseloop serve`` runs the ASGI app with uvicorn.

::

    responseloop serve --upstream http://localhost:8000/v1 --upstream-key-env UPSTREAM_KEY \\
        --tools myapp.tools:tools --store sqlite:responses.db --port 8080

Every failure to start (a bad ``--tools`` spec, a store that cannot be opened, a port in
use) is one line on stderr and exit status 2 (bad arguments) or 1 (cannot start).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ._version import __version__
from .abc._config import LoopConfig, UpstreamTarget
from .abc._protocols import ResponseStore, ToolResolver
from .openresponses import WireOptions

if TYPE_CHECKING:
    from .access import Authenticator
    from .observe.prometheus import PrometheusMetrics

__all__ = [
    "CliError",
    "access_policy",
    "hash_key",
    "load_tools",
    "main",
    "metrics_observer",
    "open_store",
    "reasoning_options",
]

logger = logging.getLogger("responseloop.cli")


class CliError(Exception):
    """A reason the command cannot run, told to the user as one line."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_tools(spec: str) -> ToolResolver:
    """The tool resolver named by ``module:object``: a resolver (has ``resolve``) is used
    as is; a tool executor (has ``tools`` and ``execute``) is offered to every caller.

    Raises:
        CliError: the spec is malformed, the module or object is missing, or the object is
            neither a resolver nor an executor.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--tools must be module:object, got {spec!r}", exit_code=2)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"--tools: cannot import {module_name!r}: {exc}", exit_code=2) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(
                f"--tools: {module_name!r} has no attribute {attribute!r}", exit_code=2
            ) from None
    if callable(getattr(target, "resolve", None)):
        resolver: ToolResolver = target
        return resolver
    if callable(getattr(target, "tools", None)) and callable(getattr(target, "execute", None)):
        from .tools._resolvers import StaticToolResolver

        return StaticToolResolver(target)
    raise CliError(
        f"--tools: {spec!r} is a {type(target).__name__}, not a ToolExecutor "
        "(e.g. FunctionTools) or a ToolResolver",
        exit_code=2,
    )


@contextlib.asynccontextmanager
async def open_store(
    spec: str, *, postgres_schema: str = "responseloop"
) -> AsyncIterator[ResponseStore]:
    """Open the store named by ``memory``, ``sqlite:PATH`` or ``postgres://…`` (also
    ``postgresql://…``, whose tables live in ``postgres_schema``), checking it can be used
    before the server starts.

    Raises:
        CliError: the spec is not one of those, or the store cannot be opened.
    """
    from .stores._memory import InMemoryStore
    from .stores.postgres import PostgresStore
    from .stores.sqlite import SQLiteStore

    if spec == "memory":
        yield InMemoryStore()
        return
    store: SQLiteStore | PostgresStore
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not path:
            raise CliError("--store sqlite: needs a path (sqlite:responses.db)", exit_code=2)
        store = SQLiteStore(path)
        opening = _touch_sqlite(store)
    elif spec.startswith(("postgres://", "postgresql://")):
        try:
            store = PostgresStore.from_url(spec, schema=postgres_schema, timeout=10.0)
        except ValueError as exc:
            raise CliError(f"--postgres-schema: {exc}", exit_code=2) from exc
        opening = store.open()
    else:
        raise CliError(
            f"--store must be memory, sqlite:PATH or postgres://…, got {spec!r}", exit_code=2
        )
    try:
        await opening
    except Exception as exc:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await store.aclose()
        raise CliError(f"cannot open the store {_redacted(spec)}: {exc}") from exc
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def _touch_sqlite(store: Any) -> None:
    # The schema is made on first use: a lookup makes it now, so a bad path fails here.
    from .exceptions import ResponseNotFound

    with contextlib.suppress(ResponseNotFound):
        await store.get_response("resp_startup_check")


def _redacted(spec: str) -> str:
    scheme, sep, rest = spec.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return spec


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on for the connections it accepts only
    # when the socket says it is TCP; without it every small reply waits ~40 ms for the
    # client's delayed ACK (Nagle). Set on the listener too, which accepted sockets inherit.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno in (98, 48, 10048) else exc.strerror
        raise CliError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# The library's own defaults (adapters._routes.MAX_BODY_BYTES, http.DEFAULT_MAX_REPLY_BYTES;
# a test holds them equal), spelt here so that --help needs neither httpx2 nor the service.
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REPLY_BYTES = 32 * 1024 * 1024
# Shorter than the upstream call's overall 600 s: a hung upstream fails its step sooner.
DEFAULT_UPSTREAM_REPLY_TIMEOUT = 300.0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _seconds(text: str) -> float:
    value = _seconds_or_none(text)
    if value is None:
        raise argparse.ArgumentTypeError("must be a positive number of seconds, not none")
    return value


def _seconds_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responseloop",
        description="The server-side agent loop of the OpenAI Responses API.",
    )
    parser.add_argument("--version", action="version", version=f"responseloop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the Responses API over HTTP",
        description="Serve POST /v1/responses (and the other routes) with uvicorn.",
    )
    serve.add_argument(
        "--upstream", required=True, help="the chat-completions base URL, e.g. http://host/v1"
    )
    serve.add_argument(
        "--upstream-key-env",
        metavar="VAR",
        help="the environment variable holding the upstream's API key",
    )
    serve.add_argument(
        "--tools", metavar="MODULE:OBJECT", help="server-side tools: a ToolExecutor or resolver"
    )
    serve.add_argument(
        "--store",
        default="memory",
        help="memory (default), sqlite:PATH or postgres://user@host/db",
    )
    serve.add_argument(
        "--postgres-schema",
        default="responseloop",
        metavar="NAME",
        help="the PostgreSQL schema of a postgres:// store (default responseloop)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument(
        "--port", type=int, default=8080, help="the port to listen on (0: any free one)"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on shutdown (SIGTERM, SIGINT), how long running responses may finish; the "
        "rest are handed over (their leases released) for another replica, or this one "
        "after its restart, to finish (default 10)",
    )
    serve.add_argument(
        "--lease-seconds",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a response's lease lasts unrenewed: a replica that dies leaves its "
        "responses to the others after this (default 30)",
    )
    serve.add_argument(
        "--sweep-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between two looks for responses whose worker died, which this server "
        "then finishes (default: half the lease, 15; 0: never)",
    )
    serve.add_argument(
        "--cancel-poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two looks for cancels asked on other replicas of responses "
        "running here (default 1; 0: never)",
    )
    serve.add_argument(
        "--hosted-tools",
        choices=("skip", "refuse"),
        default="skip",
        help="a declared hosted tool (web_search, …) the server does not run: skip it "
        "(default; not offered to the model) or refuse the request (400)",
    )
    serve.add_argument(
        "--server-tool-items",
        choices=("mcp_call", "function_call"),
        default="mcp_call",
        help="how a server-side tool call appears in output: one mcp_call item (default) "
        "or function_call + function_call_output (0.1's shape)",
    )
    serve.add_argument(
        "--event-names",
        choices=("openai", "openresponses"),
        default="openai",
        help="the names of the reasoning text events: openai (response.reasoning_text.*, "
        "what the openai SDKs parse; default) or openresponses (the spec's "
        "response.reasoning.*)",
    )
    serve.add_argument("--log-level", default="info", help="uvicorn's log level")
    serve.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=MAX_BODY_BYTES,
        metavar="BYTES",
        help="the largest request body; a longer one is refused with 413 while it is read "
        f"(default {MAX_BODY_BYTES}, 16 MiB)",
    )
    serve.add_argument(
        "--max-upstream-reply-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_REPLY_BYTES,
        metavar="BYTES",
        help="the most bytes of one upstream reply, streamed or not; past it the step fails "
        f"(default {DEFAULT_MAX_REPLY_BYTES}, 32 MiB)",
    )
    serve.add_argument(
        "--upstream-reply-timeout",
        type=_seconds_or_none,
        default=DEFAULT_UPSTREAM_REPLY_TIMEOUT,
        metavar="SECONDS|none",
        help="the longest one upstream reply may take, from the request to its last byte, "
        f"streamed or not; past it the step fails (default {DEFAULT_UPSTREAM_REPLY_TIMEOUT:g})",
    )
    serve.add_argument(
        "--reasoning-key-env",
        metavar="VAR",
        help="the environment variable holding the secret that seals "
        "reasoning.encrypted_content (default: a random key of this process)",
    )
    serve.add_argument(
        "--replay-reasoning-as",
        default="reasoning_content",
        metavar="FIELD|none",
        help="the assistant-message field that carries reasoning sent back to the upstream "
        "(default reasoning_content; none sends none)",
    )
    _add_access_flags(serve)
    commands.add_parser(
        "hash-key",
        help="print the digest of an API key read from stdin",
        description="Read one API key from stdin and print its sha256: digest, for "
        "--api-keys-file, RESPONSELOOP_API_KEYS or an --access-file.",
    )
    return parser


API_KEYS_ENV = "RESPONSELOOP_API_KEYS"


def _add_access_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--api-keys-file",
        metavar="PATH",
        help="the API keys callers must present, one key or sha256: digest a line (# "
        f"comments); also ${API_KEYS_ENV}, comma-separated. Default: open to any key",
    )
    serve.add_argument(
        "--access-file",
        metavar="PATH",
        help="a TOML file giving key groups their tools and models (docs/production.md)",
    )
    serve.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics (extra: responseloop[metrics])",
    )


def _read_text(flag: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"{flag}: cannot read {path}: {reason}", exit_code=2) from exc


def access_policy(
    args: argparse.Namespace, resolver: ToolResolver | None
) -> tuple[Authenticator | None, ToolResolver | None]:
    """The authenticator and tool resolver of the access flags: ``None`` and ``resolver``
    when no key is configured (open, as before); else an :class:`AccessPolicy` whose
    groups are the access file's, plus one of the ``--api-keys-file`` and
    ``$RESPONSELOOP_API_KEYS`` keys, which get the ``--tools``.

    Raises:
        CliError: a file cannot be read or is malformed (exit status 2).
    """
    from .access import AccessFileError, AccessPolicy, KeyGroup, key_lines, policy_from_toml

    digests: list[str] = []
    if args.api_keys_file:
        digests += key_lines(_read_text("--api-keys-file", args.api_keys_file))
    digests += key_lines("\n".join(os.environ.get(API_KEYS_ENV, "").split(",")))
    groups: list[KeyGroup] = []
    if args.access_file:
        text = _read_text("--access-file", args.access_file)
        try:
            groups = policy_from_toml(text, load_tools=_tools_of_access_file)
        except AccessFileError as exc:
            raise CliError(f"--access-file {args.access_file}: {exc}", exit_code=2) from exc
    if args.api_keys_file and not digests:
        raise CliError(f"--api-keys-file {args.api_keys_file}: holds no key", exit_code=2)
    if not digests and not groups:
        return None, resolver
    try:
        if digests:
            groups.append(KeyGroup("api-keys", digests, resolver))
        policy = AccessPolicy(groups)
    except ValueError as exc:
        raise CliError(f"access: {exc}", exit_code=2) from exc
    return policy, policy


def _tools_of_access_file(spec: str) -> ToolResolver:
    try:
        return load_tools(spec)
    except CliError as exc:
        raise CliError(f"--access-file: {exc}".replace(": --tools:", ":"), exit_code=2) from exc


def metrics_observer(args: argparse.Namespace) -> PrometheusMetrics | None:
    """The :class:`PrometheusMetrics` of ``--metrics``, or ``None``.

    Raises:
        CliError: ``prometheus-client`` is not installed.
    """
    if not args.metrics:
        return None
    try:
        from .observe.prometheus import PrometheusMetrics

        return PrometheusMetrics()
    except ImportError as exc:
        raise CliError(f"--metrics: {exc}", exit_code=2) from exc


def hash_key(stdin: TextIO) -> int:
    """``responseloop hash-key``: print the digest of the key on stdin's first line."""
    from .access import key_digest

    key = stdin.readline().strip()
    if not key:
        print("responseloop: error: hash-key: no key on stdin", file=sys.stderr)
        return 2
    print(key_digest(key))
    return 0


_RANDOM_KEY_WARNING = (
    "no --reasoning-key-env: reasoning.encrypted_content is sealed with a random key of "
    "this process, so it will not open on another process or after a restart"
)


def reasoning_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~responseloop.openresponses.WireOptions` fields of the reasoning flags.

    Without ``--reasoning-key-env`` the key is random, made for this process: reasoning
    it seals opens only here, until it stops (``serve`` warns of it once it listens).

    Raises:
        CliError: the variable ``--reasoning-key-env`` names is not set.
    """
    if args.reasoning_key_env:
        secret = os.environ.get(args.reasoning_key_env)
        if not secret:
            raise CliError(
                f"--reasoning-key-env: ${args.reasoning_key_env} is not set", exit_code=2
            )
        key = secret.encode()
    else:
        key = secrets.token_bytes(32)
    replay = args.replay_reasoning_as
    return {"reasoning_key": key, "replay_reasoning_as": None if replay == "none" else replay}


def _wire_options(args: argparse.Namespace) -> WireOptions:
    """The :class:`WireOptions` the ``serve`` flags ask for.

    Raises:
        CliError: see :func:`reasoning_options`.
    """
    return WireOptions(
        server_tool_items=args.server_tool_items,
        event_names=args.event_names,
        hosted_tools=args.hosted_tools,
        **reasoning_options(args),
    )


async def _serve(
    args: argparse.Namespace,
    resolver: ToolResolver | None,
    key: str | None,
    wire: WireOptions,
    access: tuple[Authenticator | None, PrometheusMetrics | None] = (None, None),
) -> None:
    try:
        import uvicorn
    except ImportError as exc:
        raise CliError(
            "responseloop serve needs uvicorn: pip install 'responseloop[server]'"
        ) from exc
    from .asgi._app import create_app
    from .http._httpx import HttpxClient
    from .service import ResponsesService

    sock = _bind(args.host, args.port)
    try:
        async with (
            open_store(args.store, postgres_schema=args.postgres_schema) as store,
            HttpxClient.create(
                max_reply_bytes=args.max_upstream_reply_bytes,
                reply_timeout=args.upstream_reply_timeout,
                observer=access[1],
            ) as http_client,
        ):
            service = ResponsesService(
                store=store,
                http_client=http_client,
                upstream=UpstreamTarget(args.upstream, "/chat/completions", key),
                resolver=resolver,
                wire=wire,
                config=LoopConfig(lease_seconds=args.lease_seconds),
                observer=access[1],
            )
            app = create_app(
                service,
                max_body_bytes=args.max_body_bytes,
                sweep_interval=args.sweep_interval,
                cancel_poll_interval=args.cancel_poll_interval,
                authenticator=access[0],
                metrics=access[1],
            )
            config = uvicorn.Config(
                app,
                lifespan="on",
                log_level=args.log_level,
                timeout_graceful_shutdown=args.graceful_timeout,
            )
            if not args.reasoning_key_env:
                # After every check that can refuse to start: a refusal stays one line.
                print(f"responseloop: warning: {_RANDOM_KEY_WARNING}", file=sys.stderr)
            host, port = sock.getsockname()[:2]
            # One line a supervisor (or a test) can read the chosen port from.
            print(f"responseloop serving on http://{host}:{port}", flush=True)
            await _draining_server(uvicorn, config, app, args.graceful_timeout).serve(
                sockets=[sock]
            )
    finally:
        sock.close()


def _draining_server(uvicorn: Any, config: Any, app: Any, grace: float) -> Any:
    """A uvicorn server that, asked to shut down, stops listening and drains the app
    (running responses finish within ``grace``, the rest are handed over, open streams end
    with an event) before uvicorn closes the connections."""

    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for listening in sockets or []:
                listening.close()
            await app.drain(grace)
            await super().shutdown(sockets)

    return DrainingServer(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``responseloop`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "hash-key":
        return hash_key(sys.stdin)
    try:
        key = None
        if args.upstream_key_env:
            key = os.environ.get(args.upstream_key_env)
            if not key:
                raise CliError(
                    f"--upstream-key-env: ${args.upstream_key_env} is not set", exit_code=2
                )
        resolver = load_tools(args.tools) if args.tools else None
        authenticator, resolver = access_policy(args, resolver)
        metrics = metrics_observer(args)
        wire = _wire_options(args)
        # uvicorn runs on asyncio; the library itself stays on anyio.
        access = (authenticator, metrics)
        anyio.run(_serve, args, resolver, key, wire, access, backend="asyncio")
    except CliError as exc:
        print(f"responseloop: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
