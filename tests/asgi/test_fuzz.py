"""schemathesis fuzzes the ASGI app against the Open Responses OpenAPI document extended
with the routes the server has and their error answers
(``tests/data/openresponses_openapi_extended.json``, written by
``tests/data/extend_openapi.py``): no answer is a server error, and every JSON answer
matches the document (status, content type, schema). Event streams are checked event by
event by the suite's wire capture instead (schemathesis does not read SSE).

Valid requests and invalid ones (schemathesis' negative mode) alike. Bounded for CI: a
fixed number of examples per run (about 10 s), against a scripted model.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from responseloop import InMemoryStore, ResponsesService, UpstreamTarget, create_app
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.data.extend_openapi import SOURCE, TARGET, extended

BASE = "http://responseloop.test/v1"
DOCUMENT = json.loads(TARGET.read_text())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 600


def app() -> Any:
    """A fresh app over a model that answers every call with text, sealing under a key
    of its own (so ``/responses/compact`` and compaction items are served)."""
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=ScriptedChatModel([ChatReply.text("ok")] * 12),
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
        wire=WireOptions(reasoning_key=b"fuzz-sealing-secret"),
    )
    return create_app(service)


def test_the_extended_document_is_what_its_script_writes() -> None:
    assert json.loads(json.dumps(extended(json.loads(SOURCE.read_text())))) == DOCUMENT


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(case=SCHEMA.as_strategy() | SCHEMA.as_strategy(GenerationMode.NEGATIVE))
async def test_fuzzed_requests_get_no_server_error_and_answers_match_the_document(
    case: Any,
) -> None:
    kwargs = case.as_transport_kwargs(base_url=BASE)
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), str | bytes):  # a raw (negative) body
        kwargs["content"] = kwargs.pop("data")
    served = app()
    async with (
        served.lifespan(),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=served)) as client,
    ):
        response = await client.request(**kwargs)
    assert response.status_code < 500, response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return
    case.validate_response(response, checks=CHECKS)
