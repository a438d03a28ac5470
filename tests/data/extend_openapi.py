"""Writes ``openresponses_openapi_extended.json``: the Open Responses OpenAPI document
(``openresponses_openapi_2026-04-24.json``) with the routes ``responseloop`` serves beyond
it and the error answers of each, for the fuzz run (``tests/asgi/test_fuzz.py``).

Run ``python tests/data/extend_openapi.py`` after changing it; a test checks the file is
what this script writes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SOURCE = HERE / "openresponses_openapi_2026-04-24.json"
TARGET = HERE / "openresponses_openapi_extended.json"

ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSE = {"$ref": "#/components/schemas/ResponseResource"}
RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
ANSWERS_OF_AN_ID = {
    "400": _error("the request is invalid"),
    "404": _error("no response with this id (for this caller)"),
    "409": _error("another request is running this response"),
}


def _values_of(schema: dict[str, Any], name: str) -> list[str]:
    field = schema.get("properties", {}).get(name, {})
    if "const" in field:
        return [field["const"]]
    return [value for value in field.get("enum", []) if isinstance(value, str)]


def _map_discriminators(doc: dict[str, Any]) -> None:
    """Give each ``discriminator`` without a ``mapping`` the one its members' ``type``
    constants imply. Without one, OpenAPI reads the value as the member schema's *name*
    (``FunctionTool``), which no Open Responses object carries: the spec means the
    ``type`` field's own value (``function``)."""
    schemas = doc["components"]["schemas"]
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        discriminator = node.get("discriminator")
        members = node.get("oneOf") or node.get("anyOf")
        if not isinstance(discriminator, dict) or "mapping" in discriminator or not members:
            continue
        mapping: dict[str, str] = {}
        for member in members:
            ref = member.get("$ref", "") if isinstance(member, dict) else ""
            target = schemas.get(ref.rpartition("/")[2], {})
            for value in _values_of(target, discriminator["propertyName"]):
                mapping.setdefault(value, ref)
        if mapping:
            discriminator["mapping"] = mapping


def extended(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with responseloop's routes and their errors."""
    doc = copy.deepcopy(document)
    _map_discriminators(doc)
    doc["servers"] = [{"url": "http://responseloop.test/v1"}]
    doc["components"]["schemas"]["ErrorBody"] = ERROR_BODY
    create = doc["paths"]["/responses"]["post"]
    # The server reads JSON bodies only; a form body is a 400 (documented below).
    create["requestBody"]["content"].pop("application/x-www-form-urlencoded", None)
    create["responses"].update(
        {
            "400": _error("the body is not a request the server can run"),
            "409": _error("a response with this id is already running"),
            "413": _error("the body is larger than the server accepts"),
            "502": _error("the upstream failed"),
            "504": _error("the upstream could not be reached"),
        }
    )
    doc["paths"]["/responses/compact"]["post"]["responses"].update(
        {
            "400": _error("the body is not a conversation the server can compact"),
            "404": _error("no stored response with the previous_response_id"),
            "413": _error("the body is larger than the server accepts"),
            "502": _error("the upstream failed, or the compaction did not finish"),
            "504": _error("the upstream could not be reached"),
        }
    )
    doc["paths"]["/responses"].pop("x-openresponses-websocket", None)
    doc["paths"]["/responses/{response_id}"] = {
        "parameters": [RESPONSE_ID],
        "get": {
            "operationId": "getResponse",
            "responses": {"200": _json("the stored response", RESPONSE), **ANSWERS_OF_AN_ID},
        },
        "delete": {
            "operationId": "deleteResponse",
            "responses": {
                "200": _json(
                    "deleted",
                    {
                        "type": "object",
                        "required": ["id", "object", "deleted"],
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"const": "response.deleted"},
                            "deleted": {"const": True},
                        },
                    },
                ),
                **ANSWERS_OF_AN_ID,
            },
        },
    }
    doc["paths"]["/responses/{response_id}/cancel"] = {
        "parameters": [RESPONSE_ID],
        "post": {
            "operationId": "cancelResponse",
            "responses": {"200": _json("the response, cancelled", RESPONSE), **ANSWERS_OF_AN_ID},
        },
    }
    doc["paths"]["/responses/{response_id}/input_items"] = {
        "parameters": [RESPONSE_ID],
        "get": {
            "operationId": "listInputItems",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json(
                    "a page of the response's input items",
                    {
                        "type": "object",
                        "required": ["object", "data", "first_id", "last_id", "has_more"],
                        "properties": {
                            "object": {"const": "list"},
                            "data": {"type": "array", "items": {"type": "object"}},
                            "first_id": {"type": ["string", "null"]},
                            "last_id": {"type": ["string", "null"]},
                            "has_more": {"type": "boolean"},
                        },
                    },
                ),
                **ANSWERS_OF_AN_ID,
            },
        },
    }
    return doc


def main() -> None:
    document = json.loads(SOURCE.read_text())
    TARGET.write_text(json.dumps(extended(document), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
