"""An OTLP/HTTP trace collector on loopback for tests: the spans an exporter sends,
decoded, with the name of the service that sent each."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Collector:
    """An OTLP/HTTP trace receiver on loopback: what the exporter sends, decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []  # (service.name, span)
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        received.extend((service, span) for span in scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def text_of(value: AnyValue) -> str:
    return str(getattr(value, value.WhichOneof("value") or "string_value"))


def exported_texts(spans: list[tuple[str, Span]]) -> list[str]:
    """Every name and attribute value (of spans and their events) that left the process."""
    return [span.name for _, span in spans] + [
        text_of(attribute.value)
        for _, span in spans
        for attribute in [*span.attributes, *(a for e in span.events for a in e.attributes)]
    ]
