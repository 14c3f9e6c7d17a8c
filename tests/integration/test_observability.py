"""Traces, logs and metrics of interactions: one trace per interaction in var/traces.db,
an X-Trace-Id header, a JSON log line carrying it, /metrics in Prometheus text format
behind the operator token, and no secret anywhere."""
import http.client
import json
import os
import sqlite3
import time

import harness
import promcheck
from harness import SLOW

SECRET = "sk-live-SECRET-0123456789abcdef"
TOKEN = "op-token-for-tests"
SCRIPT = {"rules": [
    {"match": ".", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT subject FROM messages ORDER BY id LIMIT 2"}}]}},
    {"match": ".", "tool_results": 1, "reply": {"content": "# Inbox\n\n<pre>{{last_tool_result}}</pre>\n"}},
]}


def start(workdir, fakellm, **env):
    e = {"OPENAI_API_KEY": SECRET, "FIGMENT_OPERATOR_TOKEN": TOKEN}
    e.update(env)
    return harness.Figment(workdir, llm_url=fakellm.base_url, extra_env=e)  # extra_env wins over the test key


def traces(fig, wait_for=1):
    deadline = time.time() + 5 * SLOW
    while True:
        db = sqlite3.connect(os.path.join(fig.var, "traces.db"))
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM traces ORDER BY started_unix_ms")]
        db.close()
        if len(rows) >= wait_for or time.time() > deadline:
            return rows
        time.sleep(0.05)


def get_metrics(fig, token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", fig.port, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, r.getheader("content-type"), body


def test_one_trace_per_interaction_with_header_and_log_line(workdir, fakellm):
    fakellm.set_script(SCRIPT)
    fig = start(workdir, fakellm)
    try:
        r = fig.browser().get("/mail/?q=x")
        assert r.status == 200
        tid = r.header("x-trace-id")
        assert tid and len(tid) == 32 and all(ch in "0123456789abcdef" for ch in tid)
        rows = traces(fig)
        assert len(rows) == 1
        t = rows[0]
        assert t["trace_id"] == tid and t["app"] == "mail" and t["path"] == "/mail/?q=x"
        assert t["model"] == "openai/fake-model" and t["outcome"] == "ok" and t["status"] == 200
        assert len(t["prompt_version"]) == 64
        assert t["total_ms"] >= t["llm_ms"] > 0 and t["ttft_ms"] > 0 and t["prompt_tokens"] > 0
        calls = json.loads(t["tool_calls"])
        assert calls[0]["name"] == "sql" and "subject" in calls[0]["result"]
        assert json.loads(t["request"])["query"] == {"q": "x"}
        assert "<pre>" in t["page_html"] and t["answer"].startswith("# Inbox")
        # the log line carries the same trace id
        lines = [json.loads(l) for l in fig.log().splitlines() if l.startswith("{")]
        assert lines[-1]["trace_id"] == tid
    finally:
        fig.stop()


def test_secrets_never_appear_in_traces_or_logs(workdir, fakellm):
    fakellm.set_script(SCRIPT)
    fig = start(workdir, fakellm)
    try:
        br = fig.browser()
        assert br.get("/mail/").status == 200
        fakellm.set_script({"rules": [{"match": ".", "fault": {"status": 401}}]})
        assert br.get("/mail/x").status == 502
        assert len(traces(fig, wait_for=2)) == 2
    finally:
        fig.stop()
    with open(os.path.join(fig.var, "traces.db"), "rb") as f:
        db = f.read()
    for name in os.listdir(fig.var):
        if name.startswith("traces.db"):
            with open(os.path.join(fig.var, name), "rb") as f:
                assert SECRET.encode() not in f.read(), name
    assert SECRET.encode() not in db
    assert SECRET not in fig.log()
    with open(os.path.join(fig.var, "figment.db"), "rb") as f:
        assert SECRET.encode() not in f.read()


def test_redaction_removes_data_rows_from_traces(workdir, fakellm):
    fakellm.set_script(SCRIPT)
    fig = start(workdir, fakellm, FIGMENT_TRACE_REDACT="1")
    try:
        assert fig.browser().get("/mail/").status == 200
        t = traces(fig)[0]
        calls = json.loads(t["tool_calls"])
        assert calls[0]["result"].startswith("[redacted")
        tool_msgs = [m for m in json.loads(t["messages"]) if m["role"] == "tool"]
        assert tool_msgs and all(m["content"].startswith("[redacted") for m in tool_msgs)
    finally:
        fig.stop()


def test_metrics_need_the_token_and_parse_as_prometheus_text(workdir, fakellm):
    fakellm.set_script(SCRIPT)
    fig = start(workdir, fakellm)
    try:
        br = fig.browser()
        for _ in range(3):
            assert br.get("/mail/").status == 200
        fakellm.set_script({"rules": [{"match": ".", "fault": {"status": 400}}]})
        assert br.get("/mail/never-rendered").status == 502  # (a seen page would be served stale)
        status, _, _ = get_metrics(fig, token=None)
        assert status == 401
        status, _, _ = get_metrics(fig, token="wrong")
        assert status == 401
        status, ctype, text = get_metrics(fig)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        promcheck.validate(text)
        assert 'figment_interactions_total{app="mail",model="openai/fake-model",outcome="ok"} 3' in text
        assert 'outcome="upstream"' in text
        assert "figment_interaction_duration_seconds_bucket" in text
        assert "figment_time_to_first_token_seconds_count" in text
        assert "figment_overhead_seconds_count" in text
        assert 'figment_upstream_errors_total{provider="openai",kind="http"} 1' in text
        assert "figment_interactions_in_flight 0" in text
        assert 'figment_tokens_total{app="mail",model="openai/fake-model",kind="prompt"}' in text
    finally:
        fig.stop()
