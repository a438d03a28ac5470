"""The pure parts of the HTTP layer (retry arithmetic, stream reassembly, SSE codec) import
nothing that does I/O, so they stay plain functions of their inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE_MODULES = ["responseloop._retry", "responseloop._chat_stream", "responseloop._sse"]
IO_MODULES = ["anyio", "httpx2", "tenacity", "sqlite3", "socket", "asyncio", "trio", "ssl"]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    # A fresh interpreter, so modules imported by other tests do not hide a violation;
    # responseloop/__init__ imports the loop, so the module is loaded on its own.
    code = (
        "import importlib.util, json, sys, types\n"
        "pkg = types.ModuleType('responseloop')\n"
        "spec = importlib.util.find_spec('responseloop')\n"
        "pkg.__path__ = spec.submodule_search_locations\n"
        "sys.modules['responseloop'] = pkg\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    leaked = [m for m in IO_MODULES if m in loaded]
    assert leaked == [], f"{module} pulls in {leaked}"
