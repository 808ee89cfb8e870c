"""Stream-through for routes that carry no participant data. Anything that does
carry participant data has a typed route and passes the personvern hook instead."""

from __future__ import annotations

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from gateway.clients import RELATIONSHIP_HEADER
from shared.app import REQUEST_ID_HEADER
from shared.clients import Upstream
from shared.internal_auth import HEADER as INTERNAL_TOKEN_HEADER
from shared.internal_auth import CallerContext

# RFC 9110 §7.6.1 connection-specific headers, plus what the gateway sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)


# Headers between the gateway and the services; never taken from or given to a caller.
INTERNAL = frozenset(
    {INTERNAL_TOKEN_HEADER.lower(), RELATIONSHIP_HEADER.lower(), REQUEST_ID_HEADER.lower()}
)


def _forwardable(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_BY_HOP | INTERNAL}


async def stream_through(
    request: Request, upstream: Upstream, caller: CallerContext, path: str
) -> StreamingResponse:
    headers = _forwardable(list(request.headers.items()))
    headers.update(upstream.headers_for(caller))
    outbound = upstream.http.build_request(
        request.method,
        path,
        params=request.query_params,
        headers=headers,
        content=request.stream() if request.method in {"POST", "PUT", "PATCH"} else None,
    )
    response = await upstream.send(outbound, stream=True)
    return StreamingResponse(
        response.aiter_raw(),
        status_code=response.status_code,
        headers=_forwardable(list(response.headers.items())),
        background=BackgroundTask(response.aclose),
    )
