"""The pure parts import nothing that does I/O (DESIGN §2)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import responseloop.openresponses

IO_MODULES = (
    "anyio",
    "asyncio",
    "trio",
    "httpx",
    "httpx2",
    "httpcore",
    "h11",
    "sqlite3",
    "_sqlite3",
    "socket",
    "_socket",
    "ssl",
    "selectors",
    "psycopg",
    "psycopg_pool",
    "redis",
    "urllib.request",
    "http.client",
)

PURE_MODULES = sorted(
    [
        "responseloop._values",
        "responseloop.exceptions",
        "responseloop._transition",
        "responseloop.openresponses",
        *(
            f"responseloop.openresponses.{info.name}"
            for info in pkgutil.iter_modules(responseloop.openresponses.__path__)
        ),
    ]
)

_PROBE = """
import json, sys
before = set(sys.modules)
import importlib
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_pure_module_list_covers_the_package() -> None:
    assert "responseloop.openresponses._request" in PURE_MODULES
    assert "responseloop.openresponses._assembly" in PURE_MODULES


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    # A fresh interpreter: this one already has anyio and friends loaded.
    # Importing responseloop.openresponses runs responseloop/__init__.py, which imports the
    # whole library (the loop uses anyio), so the probe stubs the package's __init__ by
    # importing the submodule from an empty parent package.
    probe = (
        "import sys, types, importlib.util, pathlib\n"
        f"root = pathlib.Path({str(_package_dir())!r})\n"
        "package = types.ModuleType('responseloop')\n"
        "package.__path__ = [str(root)]\n"
        "sys.modules['responseloop'] = package\n" + _PROBE
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, module],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(result.stdout)
    offenders = [
        name for name in loaded if any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    ]
    assert not offenders, f"{module} imports I/O modules: {offenders}"
    assert module in loaded


def _package_dir() -> str:
    import responseloop

    return str(responseloop.__path__[0])
