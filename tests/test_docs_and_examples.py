"""The README, the docs and the examples are run, so they cannot rot."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx2
import pytest

from responseloop import LoopConfig, RetryPolicy, exceptions
from tests.documented import documented_command, documented_url, documented_variables
from tests.loopback_upstream import FINAL_TEXT, loopback_upstream
from tests.test_layers import public_modules

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A docs block may include a file with pymdownx.snippets (`--8<-- "examples/x.py"`), as
# mkdocs does when it builds the page; the test runs what the reader sees. (Such a block
# sits between `<!-- fmt: off -->` and `<!-- fmt: on -->`: ruff format would mangle it.)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)


def fenced(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)


def expand_snippets(block: str) -> str:
    return SNIPPET.sub(lambda match: (ROOT / match.group(1)).read_text(), block)


def needs_postgres(block: str) -> bool:
    return "PostgresStore.from_url" in block


def test_quickstart_runs_offline() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert "answer: It is 18 °C in Paris right now." in result.stdout
    assert result.stdout.count("completed") == 3


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=f"{p.name}-{i}") for p in PAGES for i, b in enumerate(fenced(p, "python"))],
)
def test_python_blocks_in_the_docs_run(block: str) -> None:
    code = expand_snippets(block)
    if needs_postgres(code):
        # Skips without PostgreSQL on a laptop; fails under RESPONSELOOP_REQUIRE_SERVICES=1.
        from tests.stores.postgres import require_postgres

        require_postgres()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


def test_included_snippets_exist() -> None:
    included = [m for page in PAGES for m in SNIPPET.findall(page.read_text())]
    assert included, "the docs include their service-needing examples from examples/"
    for path in included:
        assert (ROOT / path).is_file(), path


def test_every_docs_page_is_in_the_nav_and_linked_from_the_readme() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f": {page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"
        assert f"(docs/{page.name})" in readme, f"the README does not link docs/{page.name}"
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), f"the README links a missing page: {target}"


def table_rows(page: str, heading: str) -> dict[str, str]:
    """The `| `name` | default | ... |` rows of the table under ``heading``."""
    text = (ROOT / "docs" / page).read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| `?([^`|]+?)`? \|", section, re.M))


def documented_default(field: attrs.Attribute[Any]) -> str:
    default = field.default
    if isinstance(default, frozenset):
        return "{" + ", ".join(str(value) for value in sorted(default)) + "}"
    return repr(default).replace("'", '"')


@pytest.mark.parametrize(
    ("cls", "heading"), [(LoopConfig, "## `LoopConfig`"), (RetryPolicy, "## `RetryPolicy`")]
)
def test_the_configuration_reference_lists_every_field_with_its_default(
    cls: type, heading: str
) -> None:
    rows = table_rows("configuration.md", heading)
    fields = attrs.fields(cls)
    assert list(rows) == [field.name for field in fields]
    for field in fields:
        assert rows[field.name] == documented_default(field), field.name


def test_the_errors_page_gives_each_exceptions_codes() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    rows = {}
    for names, *codes in re.findall(
        r"^\| (`\w+`(?:, `\w+`)*) \| `(\w+)` \| `(\w+)` \| (\d+) \|$", text, re.M
    ):
        for name in re.findall(r"`(\w+)`", names):
            rows[name] = codes
    dynamic = {"UpstreamStatusError"}  # its code and status follow the upstream's status
    assert set(rows) | dynamic == set(exceptions.__all__)
    for name, (error_type, sdk_code, status) in rows.items():
        cls = getattr(exceptions, name)
        assert [cls.error_type, cls.sdk_code, cls.http_status] == [
            error_type,
            sdk_code,
            int(status),
        ], name


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = fenced(ROOT / "README.md", "sh")
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_docs_repeat_the_readme_commands() -> None:
    readme = set(fenced(ROOT / "README.md", "sh"))
    assert readme <= set(fenced(ROOT / "docs" / "index.md", "sh"))


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "queue_worker.py",
            ["status: 200", "answer: We have 42 units of A-1.", "stored: completed"],
        ),
        (
            "openai_client.py",
            ["status: completed", "answer: It is 18 °C in Paris.", "retrieved: True"],
        ),
    ],
)
def test_adapter_examples_run_offline(example: str, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    for line in expected:
        assert line in result.stdout


def test_quickstart_runs_against_a_real_server_when_pointed_at_one() -> None:
    with loopback_upstream() as upstream:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "PATH": "/usr/bin:/bin",
                "OPENAI_BASE_URL": upstream.url + "/v1",
                "OPENAI_API_KEY": "sk-local",
                "OPENAI_MODEL": "local-model",
            },
            check=True,
        )
    assert f"answer: {FINAL_TEXT}" in result.stdout
    assert [body["model"] for body in upstream.bodies] == ["local-model", "local-model"]


def test_every_test_the_docs_cite_exists() -> None:
    defined = {
        name
        for path in (ROOT / "tests").rglob("*.py")
        for name in re.findall(r"def (test_\w+)", path.read_text())
    }
    for page in sorted((ROOT / "docs").glob("*.md")):
        for name in re.findall(r"`(test_\w+)`", page.read_text()):
            assert name in defined, f"{page.name} cites {name}, which no test defines"
        for path in re.findall(r"`((?:tests|examples)/[\w/]+\.py)`", page.read_text()):
            assert (ROOT / path).is_file(), f"{page.name} cites {path}, which does not exist"


def api_directives() -> dict[str, list[str] | bool]:
    """Each ``::: module`` of docs/api.md with its ``members`` option (True: all of them)."""
    text = (ROOT / "docs" / "api.md").read_text()
    found: dict[str, list[str] | bool] = {}
    for name, options in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, re.M):
        listed = re.findall(r"^        - (\w+)$", options, re.M)
        found[name] = listed or "members: false" not in options
    return found


def test_the_api_reference_covers_every_public_name() -> None:
    found = api_directives()
    assert found["responseloop"] is True  # renders every name of responseloop.__all__
    for module in public_modules():
        if not module.__all__:
            continue
        shown = found.get(module.__name__)
        assert shown is not None, f"docs/api.md has no section for {module.__name__}"
        assert shown is not False, f"{module.__name__}: render its members"
        if isinstance(shown, list):  # a module that lists its members lists all of them
            assert set(shown) == set(module.__all__), f"{module.__name__}: {sorted(module.__all__)}"


def test_the_fastapi_example_listens_on_a_port_apart_from_its_upstreams() -> None:
    command = documented_command("fastapi_mount")
    upstream = httpx2.URL(documented_variables("fastapi_mount")["RESPONSELOOP_UPSTREAM"])
    port = int(command[command.index("--port") + 1])
    assert port != upstream.port
    assert httpx2.URL(documented_url("fastapi_mount")).port == port


def test_every_example_that_says_how_to_run_it_is_run_so_by_a_test() -> None:
    tests = "".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    for path in sorted((ROOT / "examples").glob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "::\n\n" in docstring:
            assert f'documented_command("{path.stem}")' in tests, path.name


def test_the_command_page_lists_every_serve_option_with_its_variable_and_default() -> None:
    from responseloop.cli import SERVE_OPTIONS

    text = (ROOT / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| `--([\w-]+)` \| `(\w+)` \| `([^`]+)` \|", text, re.M)
    assert rows == [
        (o.name, o.env, "required" if o.required else o.described_default()) for o in SERVE_OPTIONS
    ]


def test_the_command_pages_configuration_file_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from responseloop.cli import _settings

    (block,) = fenced(ROOT / "docs" / "cli.md", "toml")
    (tmp_path / "serve.toml").write_text(block)
    for name in [name for name in os.environ if name.startswith("RESPONSELOOP_")]:
        monkeypatch.delenv(name)
    settings = _settings(["serve", "--config", str(tmp_path / "serve.toml")])
    assert settings.upstream == "http://localhost:8000/v1"
    assert settings.step_timeout == 120.0
    assert settings.retry_statuses == frozenset({429, 502, 503})
    assert settings.log_format == "json"


def test_the_serve_commands_of_the_production_page_parse() -> None:
    """Each ``responseloop serve`` command docs/production.md shows is one the CLI takes."""
    import shlex

    from responseloop.cli import _parser

    commands = [
        line
        for block in fenced(ROOT / "docs" / "production.md", "sh")
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip().startswith("responseloop serve")
    ]
    assert commands
    for command in commands:
        args = _parser().parse_args(shlex.split(command)[1:])
        assert args.command == "serve"
