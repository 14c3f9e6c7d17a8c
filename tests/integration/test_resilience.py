"""Production LLM plumbing end to end: two stand-in providers (one OpenAI-compatible, one
speaking Anthropic's Messages API), faults injected by fakellm, and what figment does:
retries, fallbacks, hedging, the circuit breaker, routing, rate limits and budgets."""
import json
import os
import socket
import sqlite3
import time

import pytest

import harness
from harness import SLOW

PAGE = {"rules": [{"match": ".", "reply": {"content": "# From {{model}}\n\nHello.\n\n"
                                                      "<form method=\"post\" action=\"/notes/new\">"
                                                      "<button>New</button></form>\n"}}]}


@pytest.fixture
def two(workdir):
    a = harness.FakeLLM(workdir, PAGE, name="llm-a")
    b = harness.FakeLLM(workdir, PAGE, name="llm-b")
    yield a, b
    a.stop()
    b.stop()


def config(a_url, b_root, **over):
    cfg = {
        "providers": {
            "alpha": {"kind": "openai", "base_url": a_url, "api_key_env": "ALPHA_KEY",
                      "timeouts": {"connect_ms": 1000, "first_token_ms": 3000, "idle_ms": 2000, "total_ms": 20000},
                      "models": {"a-small": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}},
            "beta": {"kind": "anthropic", "base_url": b_root, "api_key_env": "BETA_KEY",
                     "timeouts": {"connect_ms": 1000, "first_token_ms": 3000, "idle_ms": 2000, "total_ms": 20000},
                     "models": {"b-large": {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 15.0}}},
        },
        "default_models": ["alpha/a-small", "beta/b-large"],
        "retry": {"max_attempts": 3, "base_delay_ms": 50, "max_delay_ms": 400},
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


def start(workdir, a, b, **over):
    return harness.Figment(workdir, config=config(a.base_url, b.root_url, **over),
                           extra_env={"ALPHA_KEY": "sk-alpha", "BETA_KEY": "sk-beta"})


def log_lines(fig):
    out = []
    for line in fig.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_500_then_success_is_retried_on_the_same_model(workdir, two):
    a, b = two
    a.set_script({"rules": [{"match": ".", "times": 1, "fault": {"status": 500}}] + PAGE["rules"]})
    fig = start(workdir, a, b)
    try:
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "From a-small" in r.text
        assert len(a.requests()) == 2 and b.requests() == []
        assert "retry" in log_lines(fig)[-1]["route"]
    finally:
        fig.stop()


def test_429_with_retry_after_is_honoured(workdir, two):
    a, b = two
    a.set_script({"rules": [{"match": ".", "times": 1, "fault": {"status": 429, "retry_after": 1}}] + PAGE["rules"]})
    fig = start(workdir, a, b)
    try:
        t0 = time.time()
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "From a-small" in r.text
        assert time.time() - t0 >= 0.95  # waited as told, not the 50 ms backoff
        assert len(a.requests()) == 2
    finally:
        fig.stop()


def test_refused_connection_falls_back_to_the_other_provider(workdir, two):
    a, b = two
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()
    fig = harness.Figment(workdir, config=config(dead, b.root_url, retry={"max_attempts": 2, "base_delay_ms": 10,
                                                                           "max_delay_ms": 20}),
                          extra_env={"ALPHA_KEY": "k", "BETA_KEY": "k"})
    try:
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "From b-large" in r.text
        reqs = b.requests()
        assert len(reqs) == 1
        # the Anthropic request carries the stable prefix as cache breakpoints
        assert reqs[0]["system"][-1]["cache_control"] == {"type": "ephemeral"}
        line = log_lines(fig)[-1]
        assert line["model"] == "beta/b-large" and "connect failed" in line["route"]
    finally:
        fig.stop()


@pytest.mark.parametrize("fault,what", [
    ({"truncate_after_chunks": 2}, "bad stream"),
    ({"malformed_chunk": True}, "bad stream"),
    ({"stall_after_chunks": 2, "stall_chunks_ms": 8000}, "stalled mid-stream"),
])
def test_a_broken_stream_falls_back_before_the_page_is_committed(workdir, two, fault, what):
    a, b = two
    a.set_script({"rules": [{"match": ".", "reply": {"content": "# Partial " + "words " * 40}, "fault": fault}]})
    fig = start(workdir, a, b, providers=None) if False else start(workdir, a, b)
    try:
        t0 = time.time()
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "From b-large" in r.text and "Partial" not in r.text
        assert time.time() - t0 < 6 * SLOW
        assert len(a.requests()) == 1  # no retry of a mid-stream failure on the same model
        assert what in log_lines(fig)[-1]["route"]
    finally:
        fig.stop()


def test_stall_before_the_first_token_is_hedged(workdir, two):
    a, b = two
    a.set_script({"rules": [{"match": ".", "ttft_ms": 6000, "reply": {"content": "# Slow\n"}}]})
    fig = start(workdir, a, b, hedge={"after_ms": 300})
    try:
        t0 = time.time()
        r = fig.browser().get("/notes/")
        took = time.time() - t0
        assert r.status == 200 and "From b-large" in r.text
        assert took < 3 * SLOW
        line = log_lines(fig)[-1]
        assert line["attempts"] == 2 and "hedge" in line["route"] and "cancelled" in line["route"]
        # the cancelled attempt's prompt is still counted: more than b's own cost alone
        # usage is recorded just after the response: poll for the row
        row, deadline = None, time.time() + 5 * SLOW
        while row is None and time.time() < deadline:
            db = sqlite3.connect(os.path.join(fig.var, "figment.db"))
            row = db.execute("SELECT cost_usd FROM usage ORDER BY rowid DESC LIMIT 1").fetchone()
            db.close()
            time.sleep(0.05)
        assert row is not None
        assert row[0] > 0 and abs(row[0] - line["cost_usd"]) <= 1e-5 * row[0]  # the log line prints 6 significant digits
    finally:
        fig.stop()


def test_no_first_token_in_time_falls_back(workdir, two):
    a, b = two
    a.set_script({"rules": [{"match": ".", "ttft_ms": 6000, "reply": {"content": "# Slow\n"}}]})
    cfg_timeouts = {"connect_ms": 1000, "first_token_ms": 400, "idle_ms": 2000, "total_ms": 20000}
    c = config(a.base_url, b.root_url, retry={"max_attempts": 1, "base_delay_ms": 10, "max_delay_ms": 10})
    c["providers"]["alpha"]["timeouts"] = cfg_timeouts
    fig = harness.Figment(workdir, config=c, extra_env={"ALPHA_KEY": "k", "BETA_KEY": "k"})
    try:
        t0 = time.time()
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "From b-large" in r.text
        assert time.time() - t0 < 3 * SLOW
        assert "no first token" in log_lines(fig)[-1]["route"]
    finally:
        fig.stop()


def test_the_breaker_opens_and_recovers_through_half_open(workdir, two):
    a, b = two
    a.set_script({"rules": [{"match": ".", "fault": {"status": 503}}]})
    fig = start(workdir, a, b, retry={"max_attempts": 1, "base_delay_ms": 10, "max_delay_ms": 10},
                breaker={"window": 4, "min_requests": 2, "failure_ratio": 0.5, "open_ms": 1000})
    try:
        br = fig.browser()
        for _ in range(2):
            assert "From b-large" in br.get("/notes/").text
        assert len(a.requests()) == 2
        a.clear()
        r = br.get("/notes/")  # open: alpha is skipped at once
        assert "From b-large" in r.text and a.requests() == []
        assert "circuit open" in log_lines(fig)[-1]["route"]
        a.set_script(PAGE)  # alpha recovers
        time.sleep(1.2)
        r = br.get("/notes/")  # half-open: one probe, which succeeds and closes the breaker
        assert "From a-small" in r.text and len(a.requests()) == 1
        assert "From a-small" in br.get("/notes/").text
    finally:
        fig.stop()


def test_everything_failing_serves_the_last_good_page_marked_stale(workdir, two):
    a, b = two
    fig = start(workdir, a, b, retry={"max_attempts": 1, "base_delay_ms": 10, "max_delay_ms": 10})
    try:
        br = fig.browser()
        assert "From a-small" in br.get("/notes/").text
        a.set_script({"rules": [{"match": ".", "fault": {"status": 500}}]})
        b.set_script({"rules": [{"match": ".", "fault": {"status": 529}}]})
        r = br.get("/notes/")
        assert r.status == 200 and "From a-small" in r.text and "could not be refreshed" in r.text
        assert log_lines(fig)[-1]["outcome"] == "stale"
        r = br.get("/notes/other")  # never rendered before: a clear error page
        assert r.status == 502 and "Try again" in r.text
        # a POST is never answered with a stale page
        r = br.post("/notes/new", {"title": "x"}, page=br.get("/notes/"))
        assert r.status == 502
    finally:
        fig.stop()


def test_routing_sends_gets_and_posts_to_different_models(workdir, two, tmp_path):
    import shutil
    a, b = two
    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(harness.ROOT, "prompts"), prompts)
    app = json.loads((prompts / "notes" / "app.json").read_text())
    app["routing"] = [{"method": "POST", "models": ["beta/b-large", "alpha/a-small"]},
                      {"method": "GET", "path": "^/notes/", "models": ["alpha/a-small"]}]
    (prompts / "notes" / "app.json").write_text(json.dumps(app))
    fig = harness.Figment(workdir, config=config(a.base_url, b.root_url), prompts=str(prompts),
                          extra_env={"ALPHA_KEY": "k", "BETA_KEY": "k"})
    try:
        br = fig.browser()
        page = br.get("/notes/")
        assert "From a-small" in page.text
        assert "From b-large" in br.post("/notes/new", {"title": "x"}, page=page).text
        lines = log_lines(fig)
        assert lines[-2]["routing_rule"] == "routing[1]" and lines[-1]["routing_rule"] == "routing[0]"
    finally:
        fig.stop()


def test_budget_exhaustion_stops_upstream_calls(workdir, two):
    a, b = two
    fig = start(workdir, a, b, budgets={"per_session_usd": 0.000001})
    try:
        br = fig.browser()
        assert br.get("/notes/").status == 200  # spends more than the budget
        a.clear()
        r = br.get("/notes/")
        assert r.status == 402 and "spending limit" in r.text.lower()
        assert a.requests() == [] and b.requests() == []
        # another session still has its own budget
        assert fig.browser().get("/notes/").status == 200
    finally:
        fig.stop()
    # the spending survives a restart (budgets are seeded from recorded usage)
    fig = start(workdir, a, b, budgets={"per_session_usd": 0.000001})
    try:
        br.port = fig.port
        assert br.get("/notes/").status == 402
    finally:
        fig.stop()


def test_rate_limits_answer_429_with_retry_after(workdir, two):
    a, b = two
    fig = start(workdir, a, b, rate_limits={"per_session": {"per_minute": 2, "burst": 2}})
    try:
        br = fig.browser()
        assert br.get("/notes/").status == 200  # a new session: not limited yet, gets its cookie
        assert br.get("/notes/").status == 200
        assert br.get("/notes/").status == 200
        a.clear()
        r = br.get("/notes/")
        assert r.status == 429
        assert int(r.header("retry-after")) >= 1 and "Slow down" in r.text
        assert a.requests() == []
    finally:
        fig.stop()


def test_anthropic_provider_runs_a_tool_round(workdir, two):
    a, b = two
    b.set_script({"rules": [
        {"match": "path: /notes/", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT count(*) AS n FROM notes"}}]}},
        {"match": ".", "tool_results": 1, "reply": {"content": "# Count\n\n<pre>{{last_tool_result}}</pre>\n"}},
    ]})
    fig = harness.Figment(workdir, extra_env={"ANTHROPIC_API_KEY": "sk-ant", "ANTHROPIC_BASE_URL": b.root_url,
                                              "FIGMENT_ANTHROPIC_MODEL": "claude-test"})
    try:
        r = fig.browser().get("/notes/")
        assert r.status == 200 and "Count" in r.text and "(1 rows)" in r.text
        reqs = b.requests()
        assert len(reqs) == 2 and reqs[0]["model"] == "claude-test"
        tool_turn = reqs[1]["messages"][-1]
        assert tool_turn["role"] == "user" and tool_turn["content"][0]["type"] == "tool_result"
        line = log_lines(fig)[-1]
        assert line["model"] == "anthropic/claude-test" and line["prompt_tokens"] > 0
    finally:
        fig.stop()


def test_the_global_upstream_cap_answers_429(workdir, two):
    import threading
    a, b = two
    a.set_script({"rules": [{"match": ".", "ttft_ms": 1500, "reply": {"content": "# Slow\n"}}]})
    fig = start(workdir, a, b, rate_limits={"max_concurrent_upstream": 1})
    try:
        statuses = []

        def one():
            statuses.append(fig.browser().get("/notes/").status)

        first = threading.Thread(target=one)
        first.start()
        time.sleep(0.5 * SLOW)  # the first interaction holds the only upstream slot
        r = fig.browser().get("/notes/")
        first.join()
        assert r.status == 429 and r.header("retry-after") == "1" and "busy" in r.text
        assert statuses == [200]
        assert fig.browser().get("/static/app.css").status == 200
    finally:
        fig.stop()
