"""ResponseLoopHttpClient: the whole multi-step loop behind one call, for queue workers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from ..abc._http import HttpResponse
from ..abc._records import ResponseStatus
from ..abc._steps import Fail
from ..exceptions import ResponseLoopError
from ..service import ResponsesService
from ._errors import error_body, exception_body, failure_status

__all__ = ["LoopRequest", "ResponseLoopHttpClient"]

logger = logging.getLogger(__name__)


def _as_dict(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(body)


@attrs.frozen
class LoopRequest:
    """One ``/v1/responses`` request as a queue job carries it.

    Attributes:
        response_id: the ``resp_…`` id the host gave the response (retries reuse it).
        body: the ``/v1/responses`` body as received.
        model: the model the caller asked for, when the host keeps it apart from the body
            (used when the body has none).
        caller: the owner identity the host checks access with (never an API key).
        base_url: the upstream's base URL for this request, overriding the configured one.
    """

    response_id: str
    body: Mapping[str, Any] = attrs.field(converter=_as_dict)
    model: str | None = None
    caller: str | None = None
    base_url: str | None = None


class ResponseLoopHttpClient:
    """The loop as one call: ``execute(request, api_key) -> HttpResponse``.

    A queue worker hands it a :class:`LoopRequest`; it validates the body (400 without
    calling upstream when invalid), resolves the server-side tools ``api_key`` may use,
    stores the request (never the key), runs the loop, assembles and finalises the
    Response in the store, and answers:

    * 200 with the Response JSON when it completed (or ended ``incomplete``);
    * the upstream's status (e.g. 429, 503) when the failure came from upstream, 500 for
      any other failure, each with ``{"error": {"message", "type", "code", "param",
      "response_id"}}`` — so a host's retry policy tells retryable from final;
    * 409 while another worker runs the same response (retry later: its lease expires
      if that worker died);
    * 499 when the response was cancelled.

    Executing the same response id again resumes its stored chain; once it has ended,
    the stored outcome is answered again without running anything — except after a
    retryable upstream failure (429, 5xx, a lost connection), where the retry makes the
    failed model call again and goes on from there. A retry must carry the same body
    (409 otherwise). Nothing is kept in
    memory between calls (:attr:`ResponsesService.running` is empty when idle).
    """

    def __init__(self, service: ResponsesService) -> None:
        self.service = service

    def __repr__(self) -> str:
        return f"<ResponseLoopHttpClient {self.service!r}>"

    async def execute(self, request: LoopRequest, api_key: str | None = None) -> HttpResponse:
        """Run ``request`` to its end and answer as described on the class."""
        body = dict(request.body)
        if request.model is not None:
            body.setdefault("model", request.model)
        try:
            prepared = await self.service.prepare(
                body,
                api_key=api_key,
                caller=request.caller,
                response_id=request.response_id,
                base_url=request.base_url,
            )
            result = await self.service.run(prepared)
        except ResponseLoopError as exc:
            # 400 for a bad body, 409 while another worker holds the response's lease or
            # for a retry with another body, 500 for a store failure: each tells the
            # host's retry policy what to do.
            return HttpResponse.from_json(exc.http_status, exception_body(exc))
        except Exception as exc:
            # A bug outside our contracts (a host's client or tool raising something
            # unexpected); the response is already stored as failed.
            logger.error(
                "response %s failed with %s",
                request.response_id,
                type(exc).__name__,
                extra={"response_id": request.response_id},
            )
            logger.debug("traceback", exc_info=True)
            body = error_body(
                f"the response failed with {type(exc).__name__}",
                type="internal_error",
                code="internal_error",
                response_id=request.response_id,
            )
            return HttpResponse.from_json(500, body)
        response = result.response
        if result.status in (ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE):
            return HttpResponse.from_json(200, response)
        if result.status is ResponseStatus.CANCELLED:
            body = error_body(
                "the response was cancelled",
                type="response_cancelled",
                code="response_cancelled",
                response_id=request.response_id,
            )
            return HttpResponse.from_json(499, body)
        outcome = result.outcome
        error = dict(outcome.error) if isinstance(outcome, Fail) else response.get("error") or {}
        body = error_body(
            str(error.get("message") or "the response failed"),
            type=str(error.get("type") or "server_error"),
            code=str(error.get("type") or "server_error"),
            response_id=request.response_id,
        )
        return HttpResponse.from_json(failure_status(error), body)
