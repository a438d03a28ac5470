"""Development sessions: `nox -s tests lint types bench soak docs`."""

from __future__ import annotations

import re

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = [
    m.group(1)
    for c in PYPROJECT["project"]["classifiers"]
    if (m := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c))
]
DEV = nox.project.dependency_groups(PYPROJECT, "dev")
BENCH = nox.project.dependency_groups(PYPROJECT, "bench")


def install(session: nox.Session, extras: str = "all") -> None:
    session.install("-U", "pip")
    session.install("-e", f".[{extras}]", *DEV)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite on one Python version (services skip when absent)."""
    install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, as CI runs it."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over the library and its tests."""
    install(session)
    session.run("mypy", "--strict", "src", "tests")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the floor and the peer, in one run; rewrites benchmarks/RESULTS.md
    (`nox -s bench -- --quick` for a smoke run; `-- throughput`, `-- serve`, `-- steps`, …
    for one part)."""
    install(session)
    session.install(*BENCH)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The soak run: thousands of responses with random faults (not part of CI)."""
    install(session)
    session.run("python", "benchmarks/soak.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (a broken reference fails)."""
    install(session)
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(name="replica-soak")
def replica_soak(session: nox.Session) -> None:
    """N `responseloop serve` replicas on one store under load with random SIGKILLs and
    restarts (not part of CI; `-- --seconds 180 --store postgres`)."""
    install(session)
    session.run("python", "benchmarks/replica_soak.py", *session.posargs)
