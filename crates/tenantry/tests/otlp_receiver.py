"""An OTLP trace receiver for the tests, built on OpenTelemetry's own protocol definitions (the
`opentelemetry-proto` package, with Google's protobuf runtime and grpcio): an independent decoder
of what tenantry's exporter sends.

It listens on 127.0.0.1 for both transports, prints `{"grpc": PORT, "http": PORT}` as its first
line, then one JSON line per span received, and stops when its standard input closes. Its HTTP
port also serves an empty key set at `/jwks`, printing `{"outbound": "/jwks", "traceparent": …}`
for each download, so that a test can check outbound calls carry their trace context.
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

LOCK = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def emit(request, protocol):
    lines = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                lines.append(json.dumps({
                    "protocol": protocol,
                    "resource": resource,
                    "scope": ss.scope.name,
                    "name": span.name,
                    "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "attributes": attributes(span.attributes),
                    "status": trace_pb2.Status.StatusCode.Name(span.status.code),
                    "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                              for l in span.links],
                }))
    with LOCK:
        for line in lines:
            print(line)
        sys.stdout.flush()


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        emit(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class HttpTraces(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/jwks":
            self.send_response(404)
            self.end_headers()
            return
        with LOCK:
            print(json.dumps({"outbound": self.path, "traceparent": self.headers.get("traceparent")}))
            sys.stdout.flush()
        out = b'{"keys": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404 if self.path != "/v1/traces" else 415)
            self.end_headers()
            return
        emit(trace_service_pb2.ExportTraceServiceRequest.FromString(body), "http/protobuf")
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), HttpTraces)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(json.dumps({"grpc": grpc_port, "http": http.server_address[1]}))
    sys.stdout.flush()
    sys.stdin.read()
    http.shutdown()
    server.stop(0)


if __name__ == "__main__":
    main()
