"""An OTLP/HTTP receiver for the tests, and the oracle that decodes what it got: each body is
gunzipped and decoded by `protoc --decode` with the OTLP .proto files (the schema, not loupe's
encoder), and protoc's text output is parsed here into dicts (every field a list)."""
import gzip
import http.server
import os
import re
import ssl
import subprocess
import threading
import time

from loupe_e2e import fail, free_port

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "userspace", "export",
                         "otlp", "proto")
TRACES = ("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
          "opentelemetry/proto/collector/trace/v1/trace_service.proto")
METRICS = ("opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
           "opentelemetry/proto/collector/metrics/v1/metrics_service.proto")

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_.]*)|(-?[0-9][0-9.eE+-]*)|([:{}]))')


def _unescape(quoted):
    body = quoted[1:-1]
    out = bytearray()
    i = 0
    simple = {"n": 10, "r": 13, "t": 9, '"': 34, "'": 39, "\\": 92, "a": 7, "b": 8, "f": 12, "v": 11}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(int(m.group(0), 16))
            i += 2 + len(m.group(0))
        else:
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8))
            i += 1 + len(m.group(0))
    return bytes(out)


def parse_text_format(text):
    tokens = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            fail("protoc output not understood near: " + text[pos:pos + 80])
        tokens.append(m.group(1) and ("s", _unescape(m.group(1))) or m.group(2) and ("id", m.group(2))
                      or m.group(3) and ("n", m.group(3)) or ("p", m.group(4)))
        pos = m.end()
    index = 0

    def message():
        nonlocal index
        out = {}
        while index < len(tokens) and tokens[index] != ("p", "}"):
            name = tokens[index][1]
            index += 1
            if tokens[index] == ("p", ":"):
                index += 1
            if tokens[index] == ("p", "{"):
                index += 1
                value = message()
                index += 1  # }
            else:
                kind, raw = tokens[index]
                index += 1
                value = raw if kind == "s" else (float(raw) if kind == "n" and any(c in raw for c in ".eE")
                                                 else int(raw) if kind == "n" else raw)
            out.setdefault(name, []).append(value)
        return out

    return message()


def decode(body, kind):
    message, proto = kind
    r = subprocess.run(["protoc", f"--decode={message}", f"-I{PROTO_DIR}", proto], input=body,
                       capture_output=True)
    if r.returncode != 0:
        fail("protoc --decode failed: " + r.stderr.decode())
    return parse_text_format(r.stdout.decode("ascii", "replace")), r.stdout


def attributes(kvs):
    """{key: value} of a KeyValue list (string, int, bool or double values)."""
    out = {}
    for kv in kvs or []:
        value = kv.get("value", [{}])[0]
        for field in ("string_value", "int_value", "bool_value", "double_value"):
            if field in value:
                v = value[field][0]
                out[kv["key"][0].decode()] = v.decode() if isinstance(v, bytes) else v
    return out


def make_self_signed(directory):
    """A self-signed certificate for 127.0.0.1 and localhost (openssl): (cert path, key path)."""
    cert, key = os.path.join(directory, "receiver.crt"), os.path.join(directory, "receiver.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=loupe-test-receiver", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class Receiver:
    """OTLP/HTTP receiver on a free loopback port. `fail_until`: answer 503 (Retry-After: 1) to
    every export before that time.time(). With `tls` (cert path, key path): https only."""

    def __init__(self, port=None, fail_until=0.0, tls=None):
        self.port = port or free_port()
        self.tls = tls
        self.handshake_failures = 0
        self.fail_until = fail_until
        self.lock = threading.Lock()
        self.bodies = {"/v1/traces": [], "/v1/metrics": []}
        self.requests = []  # (path, status answered, headers)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = 503 if time.time() < receiver.fail_until else 200
                with receiver.lock:
                    receiver.requests.append((self.path, status, dict(self.headers)))
                    if status == 200 and self.path in receiver.bodies:
                        if self.headers.get("Content-Encoding") == "gzip":
                            body = gzip.decompress(body)
                        receiver.bodies[self.path].append(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)

            class TlsServer(http.server.ThreadingHTTPServer):
                def get_request(self):
                    sock, address = self.socket.accept()
                    try:
                        return context.wrap_socket(sock, server_side=True), address
                    except (ssl.SSLError, OSError):
                        with receiver.lock:
                            receiver.handshake_failures += 1
                        sock.close()
                        raise

            self.server = TlsServer(("127.0.0.1", self.port), Handler)
        else:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def spans(self):
        """Every span received: dicts with resource (attributes), and the span's fields decoded."""
        out = []
        with self.lock:
            bodies = list(self.bodies["/v1/traces"])
        for body in bodies:
            request, _ = decode(body, TRACES)
            for rs in request.get("resource_spans", []):
                resource = attributes(rs.get("resource", [{}])[0].get("attributes"))
                for ss in rs.get("scope_spans", []):
                    for s in ss.get("spans", []):
                        out.append({
                            "resource": resource,
                            "trace_id": s.get("trace_id", [b""])[0].hex(),
                            "span_id": s.get("span_id", [b""])[0].hex(),
                            "parent_span_id": s.get("parent_span_id", [b""])[0].hex(),
                            "name": s.get("name", [b""])[0].decode(),
                            "kind": s.get("kind", ["SPAN_KIND_UNSPECIFIED"])[0],
                            "start": s.get("start_time_unix_nano", [0])[0],
                            "end": s.get("end_time_unix_nano", [0])[0],
                            "attributes": attributes(s.get("attributes")),
                            "status": s.get("status", [{}])[0].get("code", ["STATUS_CODE_UNSET"])[0],
                        })
        return out

    def raw_text(self):
        """protoc's text of every body received, for grepping."""
        with self.lock:
            traces = list(self.bodies["/v1/traces"])
            metrics = list(self.bodies["/v1/metrics"])
        return "".join(decode(b, TRACES)[1].decode("ascii", "replace") for b in traces) + \
            "".join(decode(b, METRICS)[1].decode("ascii", "replace") for b in metrics)

    def last_metrics(self):
        """The latest metrics export: [(resource attributes, metric name, point dict)]."""
        with self.lock:
            bodies = list(self.bodies["/v1/metrics"])
        if not bodies:
            return []
        request, _ = decode(bodies[-1], METRICS)
        out = []
        for rm in request.get("resource_metrics", []):
            resource = attributes(rm.get("resource", [{}])[0].get("attributes"))
            for sm in rm.get("scope_metrics", []):
                for m in sm.get("metrics", []):
                    name = m["name"][0].decode()
                    for kind in ("histogram", "exponential_histogram", "sum", "gauge"):
                        for data in m.get(kind, []):
                            for p in data.get("data_points", []):
                                point = dict(p)
                                point["attributes"] = attributes(p.get("attributes"))
                                point["kind"] = kind
                                point["temporality"] = data.get("aggregation_temporality", [None])[0]
                                out.append((resource, name, point))
        return out
