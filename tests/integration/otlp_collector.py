"""A tiny OTLP/HTTP JSON trace collector for figment's tests (stdlib only).

POST /v1/traces takes an ExportTraceServiceRequest in the OTLP JSON encoding and
checks its shape strictly (resourceSpans/scopeSpans/spans, lower-case hex ids of 32
and 16 characters, nanosecond timestamps as decimal strings, typed attributes with
int64 as strings, integer kind and status code). A valid body's spans are stored and
answered 200 {}; an invalid one is answered 400 and its reason kept in errors().

GET /spans answers the stored spans as a JSON list; each span is the object as
posted, plus "resource" (the resource attributes as a flat dict) and "scope".
GET /errors answers the rejected bodies' reasons; GET /bodies the raw bodies.

As a program: `python3 otlp_collector.py [--port N]` prints "listening PORT" and
serves until SIGTERM or SIGINT. As a module: Collector().start(), .url, .spans(),
.bodies(), .errors(), .set_status(code), .stop().
"""
import json
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 << 20
HEX32 = re.compile(r"[0-9a-f]{32}\Z")
HEX16 = re.compile(r"[0-9a-f]{16}\Z")
UINT = re.compile(r"(0|[1-9][0-9]{0,19})\Z")
INT = re.compile(r"-?(0|[1-9][0-9]{0,18})\Z")
VALUE_KINDS = ("stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue")


class Invalid(Exception):
    pass


def _need(cond, why):
    if not cond:
        raise Invalid(why)


def _value(v, where):
    _need(isinstance(v, dict) and len(v) == 1, f"{where}: a value has exactly one typed member")
    (kind, x), = v.items()
    _need(kind in VALUE_KINDS, f"{where}: unknown value kind {kind!r}")
    if kind == "stringValue":
        _need(isinstance(x, str), f"{where}: stringValue is not a string")
    elif kind == "intValue":
        _need(isinstance(x, str) and INT.match(x), f"{where}: intValue must be a decimal string, got {x!r}")
    elif kind == "doubleValue":
        _need(isinstance(x, (int, float)) and not isinstance(x, bool), f"{where}: doubleValue is not a number")
    elif kind == "boolValue":
        _need(isinstance(x, bool), f"{where}: boolValue is not a boolean")
    elif kind == "arrayValue":
        _need(isinstance(x, dict) and isinstance(x.get("values", []), list), f"{where}: bad arrayValue")
        for i, e in enumerate(x.get("values", [])):
            _value(e, f"{where}[{i}]")
    elif kind == "kvlistValue":
        _need(isinstance(x, dict), f"{where}: bad kvlistValue")
        _attributes(x.get("values", []), where)
    return kind, x


def _attributes(attrs, where):
    _need(isinstance(attrs, list), f"{where}: attributes is not a list")
    seen = set()
    out = {}
    for a in attrs:
        _need(isinstance(a, dict) and set(a) == {"key", "value"}, f"{where}: an attribute is not {{key, value}}")
        key = a["key"]
        _need(isinstance(key, str) and key, f"{where}: empty attribute key")
        _need(key not in seen, f"{where}: attribute {key!r} twice")
        seen.add(key)
        kind, x = _value(a["value"], f"{where}.{key}")
        out[key] = int(x) if kind == "intValue" else x
    return out


def _span(s, where):
    _need(isinstance(s, dict), f"{where}: not an object")
    _need(isinstance(s.get("traceId"), str) and HEX32.match(s["traceId"]) and s["traceId"] != "0" * 32,
          f"{where}: traceId must be 32 lower-case hex, got {s.get('traceId')!r}")
    _need(isinstance(s.get("spanId"), str) and HEX16.match(s["spanId"]) and s["spanId"] != "0" * 16,
          f"{where}: spanId must be 16 lower-case hex, got {s.get('spanId')!r}")
    parent = s.get("parentSpanId", "")
    _need(parent == "" or (isinstance(parent, str) and HEX16.match(parent)), f"{where}: bad parentSpanId {parent!r}")
    _need(isinstance(s.get("name"), str) and s["name"], f"{where}: no name")
    _need(isinstance(s.get("kind"), int) and not isinstance(s["kind"], bool) and 0 <= s["kind"] <= 5,
          f"{where}: kind must be an integer 0..5")
    for k in ("startTimeUnixNano", "endTimeUnixNano"):
        _need(isinstance(s.get(k), str) and UINT.match(s[k]), f"{where}: {k} must be a decimal string")
    _need(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]), f"{where}: ends before it starts")
    _attributes(s.get("attributes", []), f"{where}.attributes")
    st = s.get("status")
    if st is not None:
        _need(isinstance(st, dict) and set(st) <= {"code", "message"}, f"{where}: bad status")
        _need(isinstance(st.get("code", 0), int) and 0 <= st.get("code", 0) <= 2, f"{where}: status code 0..2")
        _need(isinstance(st.get("message", ""), str), f"{where}: status message is not a string")


def validate(doc):
    """The spans of an export request (each with "resource" and "scope" added), or Invalid."""
    _need(isinstance(doc, dict) and isinstance(doc.get("resourceSpans"), list) and doc["resourceSpans"],
          "resourceSpans must be a non-empty list")
    out = []
    for i, rs in enumerate(doc["resourceSpans"]):
        where = f"resourceSpans[{i}]"
        _need(isinstance(rs, dict), f"{where}: not an object")
        res = rs.get("resource", {})
        _need(isinstance(res, dict), f"{where}.resource: not an object")
        rattrs = _attributes(res.get("attributes", []), f"{where}.resource")
        _need(isinstance(rattrs.get("service.name"), str), f"{where}: resource has no service.name")
        _need(isinstance(rs.get("scopeSpans"), list), f"{where}: scopeSpans is not a list")
        for j, ss in enumerate(rs["scopeSpans"]):
            w2 = f"{where}.scopeSpans[{j}]"
            _need(isinstance(ss, dict) and isinstance(ss.get("spans"), list), f"{w2}: spans is not a list")
            scope = ss.get("scope", {})
            _need(isinstance(scope, dict), f"{w2}.scope: not an object")
            for k, s in enumerate(ss["spans"]):
                _span(s, f"{w2}.spans[{k}]")
                out.append(dict(s, resource=rattrs, scope=scope))
    return out


def attrs(span):
    """A span's attributes as a flat dict (intValue as int)."""
    return _attributes(span.get("attributes", []), "span")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        c = self.server.collector
        if self.path == "/spans":
            self._reply(200, c.spans())
        elif self.path == "/errors":
            self._reply(200, c.errors())
        elif self.path == "/bodies":
            self._reply(200, c.bodies())
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self):
        c = self.server.collector
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            return self._reply(411 if length is None else 413, {"error": "bad Content-Length"})
        body = self.rfile.read(int(length))
        if self.path != "/v1/traces":
            return self._reply(404, {"error": "not found"})
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self._reply(415, {"error": "Content-Type must be application/json"})
        status = c._status
        if status != 200:
            return self._reply(status, {"error": "told to fail"})
        try:
            spans = validate(json.loads(body))
        except (ValueError, Invalid) as e:
            c._record_error(str(e))
            return self._reply(400, {"error": str(e)})
        c._record(body, spans)
        self._reply(200, {})


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    block_on_close = False


class Collector:
    def __init__(self, port=0):
        self._lock = threading.Lock()
        self._spans = []
        self._bodies = []
        self._errors = []
        self._status = 200
        self._server = None
        self._thread = None
        self._port = port

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def start(self):
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.collector = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening: afterwards the port refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def set_status(self, status):
        """Answer every later POST with this HTTP status (200: accept again)."""
        self._status = status

    def _record(self, body, spans):
        with self._lock:
            self._bodies.append(body.decode("utf-8", errors="replace"))
            self._spans.extend(spans)

    def _record_error(self, why):
        with self._lock:
            self._errors.append(why)

    def spans(self):
        with self._lock:
            return list(self._spans)

    def bodies(self):
        with self._lock:
            return list(self._bodies)

    def errors(self):
        with self._lock:
            return list(self._errors)


def main(argv):
    port = 0
    if len(argv) == 3 and argv[1] == "--port" and argv[2].isdigit():
        port = int(argv[2])
    elif len(argv) != 1:
        print("usage: otlp_collector.py [--port N]", file=sys.stderr)
        return 2
    c = Collector(port).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"listening {c.port}", flush=True)
    while not done.wait(0.2):
        pass
    c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
