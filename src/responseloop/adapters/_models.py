"""``GET /v1/models``: the upstream's model list, cached for a short time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..abc._config import UpstreamTarget
from ..abc._http import HttpRequest
from ..abc._protocols import HttpClient

__all__ = ["MODELS_TTL", "ModelsUnavailable", "UpstreamModels"]

logger = logging.getLogger("responseloop.models")

MODELS_TTL = 60.0
"""How long the upstream's model list is kept before it is asked again (seconds)."""


class ModelsUnavailable(Exception):
    """The upstream's model list could not be had (answered as a 502)."""


class UpstreamModels:
    """The models of the upstream (``GET {base_url}/models``, with the upstream's key),
    as OpenAI's list: ``{"object": "list", "data": [{"id", "object": "model", "created",
    "owned_by"}]}``. A successful answer is kept for ``ttl`` seconds (per process), so
    clients that list models before every request do not reach the upstream each time.
    """

    def __init__(
        self,
        http_client: HttpClient,
        upstream: UpstreamTarget,
        *,
        ttl: float = MODELS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http_client
        self._upstream = upstream
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, list[dict[str, Any]]] | None = None

    async def models(self) -> list[dict[str, Any]]:
        """Every model the upstream lists.

        Raises:
            ModelsUnavailable: the upstream failed, or its answer is not a model list.
        """
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._ttl:
            return self._cached[1]
        upstream = self._upstream
        url = upstream.base_url.rstrip("/") + "/models"
        try:
            reply = await self._http.execute(
                HttpRequest(url, method="GET", headers=upstream.headers(), timeout=30.0)
            )
            body = reply.json()
        except Exception as exc:  # whatever the client raises: a 502, never a 500
            logger.warning("the upstream's model list failed: %s", type(exc).__name__)
            raise ModelsUnavailable(f"the upstream's model list failed ({exc})") from exc
        models = _model_list(body)
        if models is None:
            raise ModelsUnavailable("the upstream's answer to GET /models is not a model list")
        self._cached = (now, models)
        return models


def _model_list(body: object) -> list[dict[str, Any]] | None:
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        return None
    models = []
    for entry in data:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            return None
        created = entry.get("created")
        owned_by = entry.get("owned_by")
        models.append(
            {
                "id": entry["id"],
                "object": "model",
                "created": created if isinstance(created, int) and created >= 0 else 0,
                "owned_by": owned_by if isinstance(owned_by, str) else "upstream",
            }
        )
    return models
