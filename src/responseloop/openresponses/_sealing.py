"""Sealing of reasoning and of compaction summaries as ``encrypted_content``:
authenticated encryption under the operator's secret. Pure: CPU only, no I/O, no clock
and no randomness.

A sealed blob is ``base64url(version ‖ nonce ‖ AES-256-GCM(ciphertext ‖ tag))``. The AEAD
key is derived from the operator's secret with HKDF-SHA256, per purpose
(``responseloop/reasoning``, ``responseloop/compaction``), so a secret of any length
works and each key is used for one purpose only. The version byte and the purpose are
bound as associated data too, so a blob of another version or made for another purpose
does not open: a reasoning blob can never be opened as a compaction summary, nor the
other way round. The nonce is synthetic: an HMAC (under a
second derived key) of the item id and the text, so the same item always seals to the
same blob. That keeps assembly deterministic (the streamed, the returned and a re-read
Response agree byte for byte) and, since a nonce repeats only for the same id and text,
at most reveals that two blobs hold the same reasoning of the same item.

``cryptography`` is an optional extra (``responseloop[sealing]``), imported when a blob is
sealed or opened.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ..exceptions import InvalidRequestError
from ._request import InputItem, ResponsesRequest

__all__ = [
    "SEAL_VERSION",
    "SealError",
    "open_compaction",
    "open_compaction_items",
    "open_reasoning",
    "open_reasoning_items",
    "reasoning_text",
    "require_sealing",
    "seal_compaction",
    "seal_reasoning",
]

SEAL_VERSION = 1
"""The version byte every blob sealed today starts with."""

_PURPOSE = b"responseloop/reasoning"
_COMPACTION = b"responseloop/compaction"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SealError(ValueError):
    """A blob that does not open: malformed, of an unknown version, tampered with, or
    sealed under another secret."""


def require_sealing() -> None:
    """Check that sealing can work here.

    Raises:
        RuntimeError: ``cryptography`` (the ``sealing`` extra) is not installed.
    """
    _aesgcm()


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise RuntimeError(
            "sealing reasoning (include: reasoning.encrypted_content) needs the "
            "'cryptography' package: pip install 'responseloop[sealing]'"
        ) from exc
    return AESGCM


@functools.lru_cache(maxsize=16)
def _derived(secret: bytes, use: bytes, purpose: bytes = _PURPOSE) -> bytes:
    # Cached: the event mapper reassembles (and so reseals) the output at every step, and a
    # server has one secret, so deriving its keys once is enough.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = purpose + b"/v" + bytes([SEAL_VERSION]) + b"/" + use
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _associated(version: int, purpose: bytes = _PURPOSE) -> bytes:
    return bytes([version]) + purpose


def _seal(plain: bytes, secret: bytes, item_id: str, purpose: bytes) -> str:
    aesgcm = _aesgcm()
    nonce_key = _derived(secret, b"nonce", purpose)
    nonce = hmac.digest(nonce_key, item_id.encode() + b"\0" + plain, hashlib.sha256)
    nonce = nonce[:_NONCE_BYTES]
    sealed = aesgcm(_derived(secret, b"aead", purpose)).encrypt(
        nonce, plain, _associated(SEAL_VERSION, purpose)
    )
    return base64.urlsafe_b64encode(bytes([SEAL_VERSION]) + nonce + sealed).decode("ascii")


def seal_reasoning(text: str, secret: bytes, *, item_id: str = "") -> str:
    """``text`` sealed under ``secret``, as URL-safe base64 text.

    ``item_id`` only makes the nonce of different items differ; opening does not need it.
    """
    return _seal(text.encode(), secret, item_id, _PURPOSE)


def open_reasoning(blob: str, secret: bytes) -> str:
    """The text ``blob`` seals, given the ``secret`` it was sealed under.

    Raises:
        SealError: ``blob`` is not one this server sealed under ``secret``, or was altered.
    """
    return _open(blob, secret, _PURPOSE)


def seal_compaction(summary: str, secret: bytes, *, item_id: str = "") -> str:
    """The ``encrypted_content`` of a ``compaction`` item holding ``summary``: the payload
    ``{"summary": …}`` (JSON, so later versions can add fields) sealed under ``secret``
    for the compaction purpose, so no reasoning blob opens as one, nor it as reasoning.

    ``item_id`` only makes the nonce of different items differ; opening does not need it.
    """
    plain = json.dumps({"summary": summary}, ensure_ascii=False, separators=(",", ":"))
    return _seal(plain.encode(), secret, item_id, _COMPACTION)


def open_compaction(blob: str, secret: bytes) -> str:
    """The summary a compaction item's ``encrypted_content`` holds.

    Raises:
        SealError: ``blob`` is not a compaction this server (or a replica with the same
            secret) sealed under ``secret``, or was altered.
    """
    plain = _open(blob, secret, _COMPACTION)
    try:
        payload = json.loads(plain)
    except ValueError as exc:  # pragma: no cover - only a forged blob gets here
        raise SealError("the blob does not hold a compaction") from exc
    summary = payload.get("summary") if isinstance(payload, dict) else None
    if not isinstance(summary, str):  # pragma: no cover - only a forged blob gets here
        raise SealError("the blob does not hold a compaction")
    return summary


def _open(blob: str, secret: bytes, purpose: bytes) -> str:
    aesgcm = _aesgcm()
    try:
        raw = base64.urlsafe_b64decode(blob.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise SealError("the blob is not base64") from exc
    if len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES:
        raise SealError("the blob is too short")
    version = raw[0]
    if version != SEAL_VERSION:
        raise SealError(f"the blob has version {version}; this server opens {SEAL_VERSION}")
    from cryptography.exceptions import InvalidTag

    nonce, sealed = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
    try:
        plain: bytes = aesgcm(_derived(secret, b"aead", purpose)).decrypt(
            nonce, sealed, _associated(version, purpose)
        )
    except InvalidTag as exc:
        raise SealError("the blob was altered or sealed under another key") from exc
    try:
        return plain.decode()
    except UnicodeDecodeError as exc:  # pragma: no cover - only a forged blob gets here
        raise SealError("the blob does not hold text") from exc


def reasoning_text(item: InputItem) -> str:
    """The plain reasoning a reasoning item holds: its ``reasoning_text`` content, else its
    ``summary_text`` summary (what this server puts there is the reasoning itself)."""
    for field, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(field) or []
        texts = [
            str(part.get("text", ""))
            for part in parts
            if isinstance(part, Mapping) and part.get("type") == kind
        ]
        if any(texts):
            return "\n\n".join(text for text in texts if text)
    return ""


def open_reasoning_items(request: ResponsesRequest, secret: bytes | None) -> ResponsesRequest:
    """``request`` with the ``encrypted_content`` of each reasoning item of its
    conversation opened into the item's ``content`` (one ``reasoning_text`` part).

    A blob the client sent (``input``) must open: one that does not (altered, sealed under
    another secret or by another server, or any blob when ``secret`` is ``None``) is a
    400. A blob carried over from a stored turn (``history``) that no longer opens (the
    secret changed since) gives way to the item's plain text.

    Raises:
        InvalidRequestError: a blob of the input does not open (``param`` is
            ``input[i].encrypted_content``).
    """
    if not any("encrypted_content" in item for item in request.conversation):
        return request
    opened: list[InputItem] = []
    for index, item in enumerate(request.conversation):
        blob = item.get("encrypted_content") if item.get("type") == "reasoning" else None
        if not isinstance(blob, str):
            opened.append(item)
            continue
        rest = {key: value for key, value in item.items() if key != "encrypted_content"}
        try:
            if secret is None:
                raise SealError("this server has no reasoning key, so it sealed no reasoning")
            text = open_reasoning(blob, secret)
        except SealError as exc:
            if index < len(request.history):
                opened.append(rest)
                continue
            raise InvalidRequestError(
                f"the reasoning item's encrypted_content does not open: {exc} (send the "
                "item as this server returned it, or without encrypted_content)",
                param=f"{request.input_param(index)}.encrypted_content",
            ) from exc
        opened.append({**rest, "content": [{"type": "reasoning_text", "text": text}]})
    split = len(request.history)
    return attrs.evolve(request, history=opened[:split], input=opened[split:])


def open_compaction_items(request: ResponsesRequest, secret: bytes | None) -> ResponsesRequest:
    """``request`` with the summary of each ``compaction`` item of its conversation opened
    into the item's ``summary`` (what the upstream is shown in its place).

    Every blob must open, sent now or carried over from a stored turn: a compaction has
    no plain text to fall back on, and dropping it would drop the conversation it stands
    for.

    Raises:
        InvalidRequestError: a blob does not open (altered, sealed under another secret or
            by another server, or any blob when ``secret`` is ``None``); ``param`` is
            ``input[i].encrypted_content`` (``previous_response_id`` for a stored turn's).
    """
    if not any(item.get("type") == "compaction" for item in request.conversation):
        return request
    opened: list[InputItem] = []
    for index, item in enumerate(request.conversation):
        if item.get("type") != "compaction":
            opened.append(item)
            continue
        try:
            if secret is None:
                raise SealError("this server has no sealing key, so it made no compaction")
            summary = open_compaction(str(item.get("encrypted_content")), secret)
        except SealError as exc:
            param = request.input_param(index)
            if index >= len(request.history):
                param += ".encrypted_content"
            raise InvalidRequestError(
                f"the compaction item's encrypted_content does not open: {exc} (send the "
                "item as a server with this server's key returned it)",
                param=param,
            ) from exc
        opened.append({**item, "summary": summary})
    split = len(request.history)
    return attrs.evolve(request, history=opened[:split], input=opened[split:])
