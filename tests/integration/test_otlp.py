"""OTLP export end to end: figment + fakellm + the test collector (otlp_collector.py).

figment reads FIGMENT_OTLP_ENDPOINT (and FIGMENT_OTLP_QUEUE, FIGMENT_OTLP_INTERVAL_MS)
at start. An interaction becomes a root SERVER span, a CLIENT "chat <model>" span with
gen_ai.* attributes and an INTERNAL "execute_tool <name>" span per tool call; nothing
private (prompt, answer, tool input/output, session id) is exported. When the
collector is down or hangs, interactions are not slowed and the dropped spans are
counted at /metrics.
"""
import http.client
import re
import socket
import time

import harness
import pytest
from harness import SLOW
from otlp_collector import Collector, attrs

TOKEN = "otlp-test-operator-token"
SQL = "SELECT id, subject FROM messages WHERE folder = 'inbox' ORDER BY sent_at DESC LIMIT 3"

SCRIPT = {"rules": [
    {"name": "query", "match": "path: /mail/\n", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": SQL}}]}},
    {"name": "page", "match": "path: /mail/\n", "tool_results": 1,
     "reply": {"content": "# Inbox OTLPPAGE\n\n<pre>{{last_tool_result}}</pre>\n"}},
    {"name": "other", "match": "path: /mail/", "reply": {"content": "# Quick\n\nNo tools.\n"}},
]}


@pytest.fixture
def collector():
    c = Collector().start()
    yield c
    c.stop()


def start_figment(workdir, fakellm, endpoint, **env):
    extra = {"FIGMENT_OTLP_ENDPOINT": endpoint, "FIGMENT_OTLP_INTERVAL_MS": "100",
             "FIGMENT_OPERATOR_TOKEN": TOKEN}
    extra.update(env)
    return harness.Figment(workdir, llm_url=fakellm.base_url, extra_env=extra)


def spans_of(collector, trace_id, want, timeout=5):
    deadline = time.time() + timeout * SLOW
    while True:
        got = [s for s in collector.spans() if s["traceId"] == trace_id]
        if len(got) >= want or time.time() > deadline:
            return got
        time.sleep(0.05)


def metric(fig, name):
    c = http.client.HTTPConnection("127.0.0.1", fig.port, timeout=10 * SLOW)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    assert r.status == 200, text[:500]
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_metric_positive(fig, name, timeout=8):
    deadline = time.time() + timeout * SLOW
    value = None
    while time.time() < deadline:
        value = metric(fig, name)
        if value:
            return value
        time.sleep(0.1)
    return value


def test_an_interaction_becomes_three_spans(workdir, fakellm, collector):
    fakellm.set_script(SCRIPT)
    fig = start_figment(workdir, fakellm, collector.url)
    try:
        b = fig.browser()
        r = b.get("/mail/")
        assert r.status == 200, r.text
        trace_id = r.header("x-trace-id")
        assert trace_id and re.fullmatch(r"[0-9a-f]{32}", trace_id), trace_id

        spans = spans_of(collector, trace_id, 3)
        assert collector.errors() == []
        assert len(spans) == 3, spans
        by_kind = {s["kind"]: s for s in spans}
        assert sorted(by_kind) == [1, 2, 3]
        root, chat, tool = by_kind[2], by_kind[3], by_kind[1]

        # the interaction: an HTTP server span, the trace's root
        assert root.get("parentSpanId", "") == ""
        assert root["name"] == "GET /mail/*"
        ra = attrs(root)
        assert ra["http.request.method"] == "GET"
        assert ra["url.path"] == "/mail/"
        assert ra["http.response.status_code"] == 200
        assert ra["figment.app"] == "mail"
        assert ra["figment.outcome"] == "ok"
        assert re.fullmatch(r"[0-9a-f]{16}", ra["figment.session.hash"])
        assert root["status"]["code"] == 1
        assert root["resource"]["service.name"] == "figment"
        assert root["scope"]["name"] == "figment"

        # the model time: a client span under the root, with the GenAI attributes
        assert chat["parentSpanId"] == root["spanId"]
        assert chat["name"] == "chat fake-model"
        ca = attrs(chat)
        assert ca["gen_ai.operation.name"] == "chat"
        assert ca["gen_ai.provider.name"]
        assert ca["gen_ai.request.model"] == "fake-model"
        assert ca["gen_ai.response.model"] == "fake-model"
        assert ca["gen_ai.usage.input_tokens"] > 0
        assert ca["gen_ai.usage.output_tokens"] > 0
        assert "figment.usage.cached_input_tokens" in ca
        assert "figment.usage.cache_write_tokens" in ca
        for s in (chat, tool):
            assert int(root["startTimeUnixNano"]) <= int(s["startTimeUnixNano"])
            assert int(s["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])

        # the tool call
        assert tool["parentSpanId"] == root["spanId"]
        assert tool["name"] == "execute_tool sql"
        ta = attrs(tool)
        assert ta["gen_ai.operation.name"] == "execute_tool"
        assert ta["gen_ai.tool.name"] == "sql"
        assert len({root["spanId"], chat["spanId"], tool["spanId"]}) == 3

        # nothing private left figment: no query text, page, state or session id
        sid = b.cookies["figment_sid"].split(".", 1)[0]
        for body in collector.bodies():
            for secret in (sid, "SELECT", "OTLPPAGE", "session_state", "Interaction"):
                assert secret not in body, secret
    finally:
        fig.stop()


def test_collector_down_never_slows_interactions(workdir, fakellm, collector):
    fakellm.set_script(SCRIPT)
    fig = start_figment(workdir, fakellm, collector.url, FIGMENT_OTLP_QUEUE="4")
    try:
        b = fig.browser()
        r = b.get("/mail/inbox")
        assert r.status == 200
        assert len(spans_of(collector, r.header("x-trace-id"), 2)) == 2  # up: root + chat
        collector.stop()  # down: the port now refuses connections

        for i in range(30):
            t0 = time.time()
            r = b.get(f"/mail/n/{i}")
            assert r.status == 200, r.text
            assert time.time() - t0 < 2 * SLOW
        dropped = wait_metric_positive(fig, "figment_otlp_spans_dropped_total")
        assert dropped and dropped > 0
    finally:
        fig.stop()


def test_hung_collector_never_slows_interactions(workdir, fakellm):
    # a port that completes TCP handshakes and never answers: each POST waits its timeout
    hang = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    endpoint = f"http://127.0.0.1:{hang.getsockname()[1]}/v1/traces"
    fakellm.set_script(SCRIPT)
    fig = start_figment(workdir, fakellm, endpoint, FIGMENT_OTLP_QUEUE="4")
    try:
        b = fig.browser()
        for i in range(20):
            t0 = time.time()
            r = b.get(f"/mail/h/{i}")
            assert r.status == 200, r.text
            assert time.time() - t0 < 2 * SLOW
        dropped = wait_metric_positive(fig, "figment_otlp_spans_dropped_total")
        assert dropped and dropped > 0
        t0 = time.time()
        fig.stop()  # the exporter gives up within its timeout
        assert time.time() - t0 < 10 * SLOW
    finally:
        fig.stop()
        hang.close()
