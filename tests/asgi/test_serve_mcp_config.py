"""``responseloop serve --mcp-servers FILE``: the operator's policy for request-declared
MCP servers, parsed from TOML with errors naming the key, from the flag, the environment
or the main --config file; the example of docs/tools.md is one the parser takes."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from responseloop.cli import SERVE_OPTIONS, CliError, _settings, mcp_policy_from_toml
from responseloop.tools.mcp import (
    DEFAULT_MAX_MCP_REPLY_BYTES,
    DeclaredMcpPolicy,
    McpHttpServer,
    McpStdioServer,
)
from tests.asgi.test_serve_config import one_line_error, run

ROOT = Path(__file__).resolve().parents[2]

FULL = """
allowed_urls = ["https://mcp.example.com/public/"]
allow_private_addresses = true
max_reply_bytes = 1000
timeout = 12.5

[servers.github]
url = "https://mcp.example.com/github"
api_key_env = "GH_KEY"
headers = { "X-Org" = "acme" }
timeout = 30

[servers.files]
command = "python"
args = ["files.py", "--root", "/srv"]
env = { LOG_LEVEL = "warning" }
env_from = ["FILES_KEY"]
cwd = "/srv"
"""


def test_a_full_file_becomes_the_policy() -> None:
    policy = mcp_policy_from_toml(FULL, {"GH_KEY": "sk-gh", "FILES_KEY": "sk-files"})
    assert policy.allowed_urls == ("https://mcp.example.com/public/",)
    assert (policy.allow_private_addresses, policy.max_reply_bytes, policy.timeout) == (
        True,
        1000,
        12.5,
    )
    github, files = policy.servers["github"], policy.servers["files"]
    assert github == McpHttpServer(
        "https://mcp.example.com/github", api_key="sk-gh", headers={"X-Org": "acme"}, timeout=30
    )
    assert files == McpStdioServer(
        "python",
        ["files.py", "--root", "/srv"],
        env={"LOG_LEVEL": "warning", "FILES_KEY": "sk-files"},
        cwd="/srv",
    )
    assert "sk-gh" not in repr(policy)
    assert "sk-files" not in repr(policy)


def test_an_empty_file_is_the_default_policy() -> None:
    assert mcp_policy_from_toml("", {}) == DeclaredMcpPolicy()
    assert DeclaredMcpPolicy().max_reply_bytes == DEFAULT_MAX_MCP_REPLY_BYTES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allowed_url = []", "unknown keys: allowed_url"),
        ("allowed_urls = 'https://h/'", "allowed_urls: must be an array of strings"),
        ("allowed_urls = ['ftp://h/']", "allowed_urls: 'ftp://h/' must be an http"),
        ("allow_private_addresses = 'no'", "allow_private_addresses: must be true or false"),
        ("max_reply_bytes = 0", "max_reply_bytes: must be a whole number"),
        ("timeout = -1", "timeout: must be a positive number"),
        ("servers = 3", "servers: must be a table"),
        ("[servers.x]\ntimeout = 1", "servers.x: needs url (streamable HTTP) or command"),
        ("[servers.x]\nurl = 'https://h/'\ncommand = 'y'", "servers.x: needs url"),
        ("[servers.x]\nurl = 'h/mcp'", "servers.x.url: must be an http"),
        ("[servers.x]\nurl = 'https://h/'\nargs = []", "unknown keys: servers.x.args"),
        ("[servers.x]\nurl = 'https://h/'\napi_key_env = 'NOPE'", "servers.x.api_key_env: $NOPE"),
        ("[servers.x]\nurl = 'https://h/'\nheaders = { a = 1 }", "servers.x.headers: must be"),
        ("[servers.x]\ncommand = 'y'\nenv_from = ['NOPE']", "servers.x.env_from: $NOPE"),
        ("[servers.x]\ncommand = 'y'\nargs = 'a b'", "servers.x.args: must be an array"),
        ("[servers.x]\ncommand = 'y'\ntimeout = 0", "servers.x.timeout: must be a positive"),
        ("[servers.'a b']\ncommand = 'y'", "servers.a b: a server_label is letters"),
        ("allowed_urls = [", "not TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        mcp_policy_from_toml(text, {})


def test_the_option_comes_from_the_flag_the_environment_or_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    option = {o.name: o for o in SERVE_OPTIONS}["mcp-servers"]
    assert (option.env, option.key, option.default) == (
        "RESPONSELOOP_MCP_SERVERS",
        "mcp_servers",
        None,
    )
    for name in [name for name in os.environ if name.startswith("RESPONSELOOP_")]:
        monkeypatch.delenv(name)
    base = ["serve", "--upstream", "http://127.0.0.1:9/v1"]
    assert _settings(base).mcp_servers is None
    assert _settings([*base, "--mcp-servers", "a.toml"]).mcp_servers == "a.toml"
    config = tmp_path / "serve.toml"
    config.write_text('mcp_servers = "c.toml"\n')
    assert _settings([*base, "--config", str(config)]).mcp_servers == "c.toml"
    monkeypatch.setenv("RESPONSELOOP_MCP_SERVERS", "e.toml")
    assert _settings([*base, "--config", str(config)]).mcp_servers == "e.toml"


def test_declared_mcp_policy_reads_the_file_and_refuses_in_one_line(tmp_path: Path) -> None:
    import argparse

    from responseloop.cli import declared_mcp_policy

    assert declared_mcp_policy(argparse.Namespace(mcp_servers=None)) is None
    good = tmp_path / "mcp.toml"
    good.write_text(f"[servers.calc]\ncommand = {sys.executable!r}\n")
    policy = declared_mcp_policy(argparse.Namespace(mcp_servers=str(good)))
    assert policy is not None
    assert set(policy.servers) == {"calc"}
    with pytest.raises(CliError, match="cannot read") as missing:
        declared_mcp_policy(argparse.Namespace(mcp_servers=str(tmp_path / "none.toml")))
    assert missing.value.exit_code == 2


def test_serve_refuses_a_bad_file_in_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "mcp.toml"
    bad.write_text("[servers.github]\nurl = 'https://h/mcp'\napi_key_env = 'NO_SUCH_KEY_VAR'\n")
    result = run(
        "serve",
        "--upstream",
        "http://127.0.0.1:9/v1",
        "--no-upstream-check",
        "--mcp-servers",
        str(bad),
    )
    line = one_line_error(result, 2)
    assert f"--mcp-servers {bad}: servers.github.api_key_env: $NO_SUCH_KEY_VAR is not set" in line


def test_the_tools_pages_example_file_is_accepted() -> None:
    text = (ROOT / "docs" / "tools.md").read_text()
    (block,) = re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S)
    policy = mcp_policy_from_toml(block, {"GITHUB_MCP_TOKEN": "t", "FILES_API_KEY": "k"})
    assert set(policy.servers) == {"github", "files"}
    assert policy.url_allowed("https://mcp.example.com/public/mcp")
    assert not policy.allow_private_addresses
