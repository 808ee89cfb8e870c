"""Stream-through for routes that carry no participant data. Anything that does
carry participant data has a typed route and passes the personvern hook instead."""

from __future__ import annotations

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from gateway.clients import Upstream
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


def _forwardable(headers: dict[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, dict) else headers
    return {
        k: v
        for k, v in items
        if k.lower() not in HOP_BY_HOP and not k.lower().startswith("broen-internal")
    }


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
