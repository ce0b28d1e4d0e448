"""An OTLP/HTTP metrics receiver for tests, written on the `opentelemetry-proto` package.

Usage: python otlp_receiver.py PORT

Listens on 127.0.0.1:PORT, prints `READY PORT` when it does, and for every
`POST /v1/metrics` (protobuf ExportMetricsServiceRequest) prints one JSON line per
number data point:

  {"device_id": <resource attribute device.id>, "service": <service.name>,
   "scope": <scope name>, "metric": <metric name>, "kind": "gauge",
   "attributes": {...}, "time_unix_nano": N, "as_int" | "as_double": V}

and answers 200 with an empty ExportMetricsServiceResponse. Prints `MISSING ...` and
exits when the package is not installed.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

try:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    )
except ImportError as err:  # pragma: no cover - reported to the test
    print(f"MISSING opentelemetry-proto: {err}", flush=True)
    sys.exit(0)


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs):
    return {kv.key: any_value(kv.value) for kv in pairs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        line = {
                            "device_id": resource.get("device.id"),
                            "service": resource.get("service.name"),
                            "scope": scope_metrics.scope.name,
                            "metric": metric.name,
                            "kind": kind,
                            "attributes": attributes(point.attributes),
                            "time_unix_nano": point.time_unix_nano,
                        }
                        value_kind = point.WhichOneof("value")
                        line[value_kind] = getattr(point, value_kind)
                        print(json.dumps(line, sort_keys=True), flush=True)
        answer = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    server = HTTPServer(("127.0.0.1", port), Handler)
    print(f"READY {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
