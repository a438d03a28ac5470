"""``responseloop serve`` as an operator runs it: settings from the command line, the
environment and a TOML file (in that order), the LoopConfig knobs reaching the loop, a
start that refuses bad upstreams in one line, DSN secrets never printed, and a log that
says what failed without saying what was asked.

Each server is a real subprocess; its stderr (the log) is read back and asserted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from responseloop import LoopConfig, RetryPolicy
from responseloop.cli import SERVE_OPTIONS, _redacted
from responseloop.testing import ChatReply
from tests.asgi.serving import Served, serving, subprocess_env
from tests.loopback_upstream import Reply, Upstream, running_upstream
from tests.stores.postgres import drop_schema, new_schema, require_postgres
from tests.wire_checks import check_emitted_response

SECRET_ARGUMENT = "hunter2-argument"
SECRET_MESSAGE = "my-private-question"
UPSTREAM_KEY = "sk-upstream-secret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with running_upstream() as running:
        yield running


def run(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responseloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(env or {}),
        cwd=cwd,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single line a refusal to start prints, checked to be just that."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("responseloop: error: "), lines[0]
    return lines[0]


async def post(server: Served, body: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/v1/responses", json=body)


async def create(server: Served, text: str = "hi") -> dict[str, Any]:
    answer = await post(server, {"model": "m", "input": text})
    assert answer.status_code == 200, answer.text
    response: dict[str, Any] = answer.json()
    check_emitted_response(response)
    return response


# --help


def test_help_shows_every_option_with_its_default_and_variable_and_the_log_levels() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines anywhere
    for option in SERVE_OPTIONS:
        assert f"--{option.name}" in text
        assert f"env {option.env}]" in text, option.name
        if not option.required:
            assert f"[default: {option.described_default()};" in text, option.name
    assert "{critical,error,warning,info,debug,trace}" in text
    assert "[default: 127.0.0.1;" in text
    assert "[default: 8080;" in text
    assert "the command line wins over the environment" in text


def test_every_loop_config_and_retry_policy_field_is_a_setting_with_the_librarys_default() -> None:
    settings = {option.key: option for option in SERVE_OPTIONS}
    for field in LoopConfig.__attrs_attrs__:
        assert settings[field.name].default == field.default, field.name
    for field in RetryPolicy.__attrs_attrs__:
        key = field.name if field.name.startswith("retry_") else f"retry_{field.name}"
        assert settings[key].default == field.default, field.name


# Where settings come from


async def body_cap(server: Served) -> int:
    """The body cap the server applies, read from its 413 for a 5000-byte body."""
    answer = await post(server, {"model": "m", "input": "x" * 5000})
    assert answer.status_code == 413, answer.text
    message = answer.json()["error"]["message"]
    found = re.fullmatch(r"the body is larger than (\d+) bytes", message)
    assert found is not None, message
    return int(found.group(1))


async def test_the_command_line_wins_over_the_environment_which_wins_over_the_file(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    # The upstream comes from the file alone: no --upstream anywhere.
    config.write_text(f'upstream = "{upstream.url}/v1"\nmax_body_bytes = 1000\n')
    file, env = ["--config", str(config)], {"RESPONSELOOP_MAX_BODY_BYTES": "2000"}
    caps = []
    for args, variables in [
        (file, {}),
        (file, env),
        ([*file, "--max-body-bytes", "3000"], env),
        # --config by its own variable too
        ([], {"RESPONSELOOP_CONFIG": str(config)}),
    ]:
        async with serving(args, log=tmp_path / "log", env=variables) as server:
            caps.append(await body_cap(server))
    assert caps == [1000, 2000, 3000, 1000]


async def test_loop_knobs_from_the_environment_and_the_file_reach_the_loop(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("retry_attempts = 2\nretry_initial_backoff = 0\nretry_jitter = 0\n")
    env = {"RESPONSELOOP_MAX_ITERATIONS": "1"}
    args = ["--upstream", upstream.url + "/v1", "--config", str(config)]
    args += ["--tools", "tests.asgi.failing_tools:tools"]
    async with serving(args, log=tmp_path / "log", env=env) as server:
        # Two tries in all (the file's retry_attempts), then the step fails.
        upstream.add(ChatReply.error(503), ChatReply.error(503))
        failed = await create(server)
        assert failed["status"] == "failed"
        assert len(upstream.received) == 2
        # One model call per scope (the variable's max_iterations): a tool call that
        # would need a second one fails the response.
        upstream.add(ChatReply.tool_call("explode", {"secret": "x"}))
        capped = await create(server)
        assert capped["status"] == "failed"
        assert "more than 1 model calls" in capped["error"]["message"]


@pytest.mark.parametrize("client", ["httpx", "aiohttp"])
async def test_each_upstream_client_checks_answers_streams_and_retries(
    upstream: Upstream, tmp_path: Path, client: str
) -> None:
    args = ["--upstream", upstream.url + "/v1", "--upstream-client", client]
    args += ["--upstream-key-env", "TEST_UPSTREAM_KEY", "--retry-initial-backoff", "0"]
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    async with serving(args, log=tmp_path / "log", env=env) as server:
        assert [r.path for r in upstream.model_listings] == ["/v1/models"]
        upstream.add(ChatReply.error(503), ChatReply.text("hello"))
        answered = await create(server)
        assert answered["status"] == "completed"
        assert answered["output"][-1]["content"][0]["text"] == "hello"
        upstream.add(ChatReply.text("streamed"))
        async with (
            httpx2.AsyncClient(base_url=server.url, timeout=30) as http,
            http.stream(
                "POST", "/v1/responses", json={"model": "m", "input": "hi", "stream": True}
            ) as reply,
        ):
            events = [line[7:] async for line in reply.aiter_lines() if line.startswith("event: ")]
    assert events[-1] == "response.completed"
    assert len(upstream.received) == 3  # the 503 was tried again
    assert {r.headers["authorization"] for r in upstream.received} == {f"Bearer {UPSTREAM_KEY}"}
    # The calls went through the client asked for (each names itself).
    assert all(client in r.headers["user-agent"].lower() for r in upstream.received)


async def test_the_store_dsn_comes_from_the_environment(tmp_path: Path) -> None:
    url = require_postgres()
    schema = new_schema()
    # Trust authentication ignores the password: it is here to be kept out of the log.
    dsn = httpx2.URL(url).copy_with(password="not-shown")
    dsn = dsn.copy_merge_params({"password": "not-shown-either"})
    env = {"RESPONSELOOP_STORE": str(dsn), "RESPONSELOOP_POSTGRES_SCHEMA": schema}
    try:
        async with (
            running_upstream() as upstream,
            serving(["--upstream", upstream.url + "/v1"], log=tmp_path / "log", env=env) as server,
        ):
            upstream.add(ChatReply.text("Stored."))
            created = await create(server)
            assert created["status"] == "completed"
            async with httpx2.AsyncClient(base_url=server.url) as http:
                stored = (await http.get(f"/v1/responses/{created['id']}")).json()
            check_emitted_response(stored)
            assert stored["output"] == created["output"]
    finally:
        drop_schema(url, schema)
    assert "not-shown" not in (tmp_path / "log").read_text()


@pytest.mark.parametrize(
    ("args", "env", "file", "message"),
    [
        ([], {"RESPONSELOOP_PORT": "x"}, None, "RESPONSELOOP_PORT: not a whole number: 'x'"),
        ([], {"RESPONSELOOP_UPSTREAM_CHECK": "maybe"}, None, "not a yes/no value: 'maybe'"),
        ([], {}, "prot = 3\n", "has unknown keys: prot"),
        ([], {}, "port = true\n", "port: expected a value, not true"),
        ([], {}, "port = [", "is not TOML"),
        ([], {}, "step_timeout = -1\n", "step_timeout: must be a finite number > 0, got -1"),
        (["--retry-multiplier", "0.5"], {}, None, "must be a finite number >= 1"),
        (["--log-level", "loud"], {}, None, "'loud' is not one of critical, error, warning"),
    ],
)
def test_a_bad_setting_is_one_line_naming_where_it_came_from(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str | None, message: str
) -> None:
    if file is not None:
        (tmp_path / "serve.toml").write_text(file)
        args = [*args, "--config", str(tmp_path / "serve.toml")]
    result = run("serve", "--upstream", "http://127.0.0.1:9/v1", *args, env=env)
    assert message in one_line_error(result, 2)


def test_a_config_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    result = run("serve", "--config", str(tmp_path / "missing.toml"))
    assert f"--config: cannot read {tmp_path / 'missing.toml'}" in one_line_error(result, 2)


def test_no_upstream_from_any_source_is_refused() -> None:
    line = one_line_error(run("serve"), 2)
    assert "--upstream is required (or $RESPONSELOOP_UPSTREAM, or upstream in --config)" in line


# Starting up


@pytest.mark.parametrize("where", ["flag", "environment"])
@pytest.mark.parametrize("url", ["localhost:8399/v1", "http:///v1", "ftp://host/v1"])
def test_an_upstream_without_a_scheme_or_host_is_refused(where: str, url: str) -> None:
    if where == "flag":
        result = run("serve", "--upstream", url)
    else:
        result = run("serve", env={"RESPONSELOOP_UPSTREAM": url})
    line = one_line_error(result, 2)
    assert "must be an http:// or https:// URL with a host" in line
    assert repr(url) in line


def test_an_unreachable_upstream_is_refused_naming_it() -> None:
    result = run("serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0")
    line = one_line_error(result, 1)
    assert "cannot reach the upstream at http://127.0.0.1:9/v1/models (ConnectError)" in line


@pytest.mark.parametrize("where", ["flag", "environment", "file"])
async def test_without_the_check_it_starts_and_failed_calls_name_the_upstream(
    tmp_path: Path, where: str
) -> None:
    args = ["--upstream", "http://127.0.0.1:9/v1", "--retry-attempts", "1"]
    env = {}
    if where == "flag":
        args.append("--no-upstream-check")
    elif where == "environment":
        env["RESPONSELOOP_UPSTREAM_CHECK"] = "0"
    else:
        (tmp_path / "serve.toml").write_text("upstream_check = false\n")
        args += ["--config", str(tmp_path / "serve.toml")]
    async with serving(args, log=tmp_path / "log", env=env) as server:
        failed = await create(server)
    assert failed["status"] == "failed"
    assert "http://127.0.0.1:9/v1/chat/completions" in failed["error"]["message"]


async def test_serve_reaches_the_upstream_once_at_start_with_its_key(
    upstream: Upstream, tmp_path: Path
) -> None:
    args = ["--upstream", upstream.url + "/v1", "--upstream-key-env", "TEST_UPSTREAM_KEY"]
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    async with serving(args, log=tmp_path / "log", env=env):
        pass
    assert [r.path for r in upstream.model_listings] == ["/v1/models"]
    assert upstream.model_listings[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert upstream.received == []  # no model call was made by the check


async def test_an_upstream_answering_an_error_status_still_counts_as_reachable(
    tmp_path: Path,
) -> None:
    # A server with no /models route at all (a 404) is there all the same.
    async with running_upstream() as upstream:
        upstream.models_reply = Reply.text(404, "no such route")
        async with serving(["--upstream", upstream.url + "/v1"], log=tmp_path / "log"):
            pass
    assert len(upstream.model_listings) == 1


async def test_the_console_script_imports_tools_from_the_current_directory(
    upstream: Upstream, tmp_path: Path
) -> None:
    (tmp_path / "mytools_cwd.py").write_text(
        "from responseloop import FunctionTools\ntools = FunctionTools()\n"
    )
    script = Path(sys.executable).parent / "responseloop"
    command = [str(script), "serve", "--port", "0", "--upstream", upstream.url + "/v1"]
    command += ["--tools", "mytools_cwd:tools"]
    process = await anyio.open_process(
        command, env=subprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1000)
        assert line.startswith(b"responseloop serving on http://127.0.0.1:"), line
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()


# DSN secrets


@pytest.mark.parametrize(
    "spec",
    [
        "postgresql://bob:pw%2Fs3cret@db.example/app",
        "postgresql://bob@db.example/app?password=pw%2Fs3cret&sslmode=require",
        "postgresql://bob@db.example/app?sslmode=require&PASSWORD=pw%2Fs3cret",
        "host=db.example user=bob password=pw/s3cret dbname=app",
        "host=db.example password = 'pw/s3cret' dbname=app",
        "postgresql://db.example/app?sslpassword=pw%2Fs3cret",
    ],
)
def test_a_dsn_secret_is_redacted_in_every_form(spec: str) -> None:
    shown = _redacted(spec)
    assert "s3cret" not in shown
    assert "db.example" in shown
    # As the store's refusal is put: the spec, and the driver's words quoting the secret on
    # their own; main redacts every refusal once more, which changes nothing.
    message = f"cannot open {shown}: the driver said 'pw/s3cret' and pw%2Fs3cret"
    redacted = _redacted(message, spec)
    assert redacted == f"cannot open {shown}: the driver said '…' and …"
    assert _redacted(redacted, spec) == redacted


def test_a_refused_store_spec_is_printed_without_its_secrets() -> None:
    spec = "redis://bob:pw-s3cret@127.0.0.1/0?password=other-s3cret"
    result = run("serve", "--upstream", "http://127.0.0.1:9/v1", "--store", spec)
    line = one_line_error(result, 2)
    assert "--store must be memory, sqlite:PATH or postgres://" in line
    assert "s3cret" not in line
    assert "127.0.0.1/0" in line


# Logs


async def run_a_failing_tool(
    upstream: Upstream, tmp_path: Path, *flags: str
) -> tuple[dict[str, Any], str]:
    """A response whose tool raises (quoting its secret argument), served with ``flags``;
    the response and the server's whole log."""
    args = ["--upstream", upstream.url + "/v1", "--tools", "tests.asgi.failing_tools:tools"]
    args += ["--upstream-key-env", "TEST_UPSTREAM_KEY", *flags]
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    upstream.add(
        ChatReply.tool_call("explode", {"secret": SECRET_ARGUMENT}, call_id="call_1"),
        ChatReply.text("It failed."),
    )
    async with serving(args, log=tmp_path / "log", env=env) as server:
        response = await create(server, SECRET_MESSAGE)
    return response, (tmp_path / "log").read_text()


def assert_no_secrets(text: str) -> None:
    for secret in (SECRET_ARGUMENT, SECRET_MESSAGE, UPSTREAM_KEY):
        assert secret not in text


async def test_at_info_a_failed_step_is_one_warning_line_with_ids_and_no_secrets(
    upstream: Upstream, tmp_path: Path
) -> None:
    response, log = await run_a_failing_tool(upstream, tmp_path, "--log-level", "info")
    assert response["status"] == "completed"  # the error was fed back to the model
    failed = [line for line in log.splitlines() if "step failed" in line]
    assert len(failed) == 1, log
    line = failed[0]
    assert " WARNING responseloop.loop: step failed: tool_error [" in line
    for field in (
        f"response_id={response['id']}",
        "step_kind=tool_call",
        "tool=explode",
        "error_type=tool_error",
        "exception_type=RuntimeError",
    ):
        assert field in line
    assert re.search(r"step_id=step_\w+", line)
    # The library's INFO lines and uvicorn's come through the same log.
    assert "INFO responseloop.service: response finished: completed" in log
    assert "INFO uvicorn.error: Application startup complete." in log
    assert "Traceback" not in log
    assert "cannot use" not in log
    assert_no_secrets(log)


async def test_at_debug_the_failed_steps_message_and_traceback_are_logged(
    upstream: Upstream, tmp_path: Path
) -> None:
    _, log = await run_a_failing_tool(upstream, tmp_path, "--log-level", "debug")
    assert "Traceback (most recent call last)" in log
    assert f"RuntimeError: cannot use {SECRET_ARGUMENT}" in log
    assert "DEBUG responseloop.loop: step started" in log
    assert UPSTREAM_KEY not in log  # a key is never logged, not even at DEBUG


async def test_at_warning_only_the_failure_is_logged(upstream: Upstream, tmp_path: Path) -> None:
    _, log = await run_a_failing_tool(upstream, tmp_path, "--log-level", "warning")
    levels = {line.split()[1] for line in log.splitlines() if line.strip()}
    assert levels <= {"WARNING", "ERROR", "CRITICAL"}, log
    assert "step failed: tool_error" in log


async def test_json_logs_are_one_object_per_line_with_the_ids_as_fields(
    upstream: Upstream, tmp_path: Path
) -> None:
    response, log = await run_a_failing_tool(
        upstream, tmp_path, "--log-format", "json", "--log-level", "info"
    )
    entries = [json.loads(line) for line in log.splitlines()]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    failed = [e for e in entries if e["message"].startswith("step failed")]
    assert len(failed) == 1
    assert failed[0]["level"] == "WARNING"
    assert failed[0]["logger"] == "responseloop.loop"
    assert failed[0]["response_id"] == response["id"]
    assert failed[0]["tool"] == "explode"
    assert failed[0]["step_kind"] == "tool_call"
    assert failed[0]["error_type"] == "tool_error"
    assert failed[0]["exception_type"] == "RuntimeError"
    assert {e["logger"] for e in entries} >= {"responseloop.service", "uvicorn.error"}
    assert_no_secrets(log)


def test_a_refusal_to_start_is_one_plain_line_in_json_mode_too() -> None:
    result = run(
        "serve",
        "--upstream",
        "http://127.0.0.1:9/v1",
        env={"RESPONSELOOP_LOG_FORMAT": "json", "RESPONSELOOP_PORT": "-1"},
    )
    assert "RESPONSELOOP_PORT: must be at least 0, got -1" in one_line_error(result, 2)
