"""The request path end to end: real figment + fakellm on loopback ports."""
import json
import re

from harness import SLOW

INBOX_SQL = "SELECT id, subject FROM messages WHERE folder = 'inbox' ORDER BY sent_at DESC LIMIT 5"

INBOX_SCRIPT = {"rules": [
    {"name": "inbox-query", "match": "path: /mail/\n", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": INBOX_SQL}}]}},
    {"name": "inbox-page", "match": "path: /mail/\n", "tool_results": 1,
     "reply": {"content": "# Inbox\n\n<pre>{{last_tool_result}}</pre>\n\n[first](/mail/message/1)\n\n"
                          "<form method=\"post\" action=\"/mail/message/1/unread\"><button>Mark unread</button></form>\n"}},
    {"name": "message", "match": "path: /mail/message/[0-9]+\n",
     "reply": {"content": "# A message\n\nBody.\n"}},
    {"name": "post", "match": "method: POST",
     "reply": {"content": "# Done\n\nMarked.\n"}},
]}


def user_text(req):
    return [m for m in req["messages"] if m["role"] == "user"][-1]["content"]


def test_inbox_renders_from_a_scripted_sql_call(figment, fakellm):
    fakellm.set_script(INBOX_SCRIPT)
    b = figment.browser()
    r = b.get("/mail/")
    assert r.status == 200, r.text
    assert "<title>Inbox" in r.text
    reqs = fakellm.requests()
    assert len(reqs) == 2
    # the page shows what the sql tool returned from the seeded database
    tool_msgs = [m for m in reqs[1]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 1
    table = tool_msgs[0]["content"]
    assert table.startswith("id | subject"), table
    first_subject = table.splitlines()[1].split(" | ", 1)[1]
    assert first_subject.replace("&", "&amp;")[:20] in r.text or first_subject[:20] in r.text
    # the model was asked with the documented interaction text
    assert user_text(reqs[0]).startswith("# Interaction\nmethod: GET\npath: /mail/\n")
    assert reqs[0]["stream"] is True
    assert r.header("set-cookie").startswith("figment_sid=")


def test_followed_link_and_posted_form_are_interactions(figment, fakellm):
    fakellm.set_script(INBOX_SCRIPT)
    b = figment.browser()
    inbox = b.get("/mail/")
    assert inbox.status == 200
    assert 'href="/mail/message/1"' in inbox.text
    fakellm.clear()
    r = b.get("/mail/message/1")
    assert r.status == 200 and "A message" in r.text
    assert "path: /mail/message/1\n" in user_text(fakellm.requests()[0])
    fakellm.clear()
    r = b.post("/mail/message/1/unread", {"note": "x y&z"}, page=inbox)
    assert r.status == 200, r.text
    text = user_text(fakellm.requests()[0])
    assert "method: POST\npath: /mail/message/1/unread\n" in text
    assert 'form: {"note":"x y&z"}' in text  # the CSRF field is not shown to the model
    assert "recent:\n- GET /mail/ -> Inbox\n- GET /mail/message/1 -> A message" in text


def test_set_state_is_visible_in_the_next_prompt(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": "path: /mail/login", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"user": "alex", "folder": "inbox"}}}]}},
        {"match": "path: /mail/login", "tool_results": 1, "reply": {"content": "# Welcome\n"}},
        {"match": "path: /mail/", "reply": {"content": "# Inbox\n"}},
    ]})
    b = figment.browser()
    assert b.get("/mail/login").status == 200
    assert "ok; state is now" in [m for m in fakellm.requests()[1]["messages"] if m["role"] == "tool"][0]["content"]
    fakellm.clear()
    assert b.get("/mail/").status == 200
    assert 'session_state: {"folder":"inbox","user":"alex"}' in user_text(fakellm.requests()[0])
    # another browser has its own session
    fakellm.clear()
    assert figment.browser().get("/mail/").status == 200
    assert "session_state: {}" in user_text(fakellm.requests()[0])


def test_session_survives_a_restart(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": "path: /mail/login", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"user": "alex"}}}]}},
        {"match": ".", "reply": {"content": "# Page\n"}},
    ]})
    b = figment.browser()
    assert b.get("/mail/login").status == 200
    figment.restart()
    b.port = figment.port
    fakellm.clear()
    r = b.get("/mail/")
    assert r.status == 200
    assert r.header("set-cookie") is None  # the same session, no new cookie
    assert 'session_state: {"user":"alex"}' in user_text(fakellm.requests()[0])


def test_post_without_or_with_a_wrong_csrf_token_is_refused(figment, fakellm):
    fakellm.set_script(INBOX_SCRIPT)
    b = figment.browser()
    page = b.get("/mail/")
    fakellm.clear()
    assert b.post("/mail/send", {"to": "a@example.com"}, csrf=False).status == 403
    assert b.post("/mail/send", {"to": "a@example.com"}, csrf="forged").status == 403
    # a token from another session does not work either
    other = figment.browser()
    other_page = other.get("/mail/")
    r = b.post("/mail/send", {"to": "a@example.com"}, csrf=other_page.csrf())
    assert r.status == 403 and "expired" in r.text
    assert fakellm.requests() == [] or all("method: POST" not in user_text(q) for q in fakellm.requests())
    assert b.post("/mail/message/1/unread", {}, page=page).status == 200


def test_oversized_body_is_413(figment, fakellm):
    # figment must refuse from the Content-Length alone, before reading the body (a real
    # client would otherwise stream megabytes first): send only the headers
    import socket
    with socket.create_connection(("127.0.0.1", figment.port), timeout=10 * SLOW) as s:
        s.sendall(b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 2097152\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert fakellm.requests() == []


def test_forged_cookie_gets_a_fresh_session(figment, fakellm):
    fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# Hi\n"}}]})
    b = figment.browser()
    b.cookies["figment_sid"] = "0" * 32 + ".AAAA"
    r = b.get("/mail/")
    assert r.status == 200
    sc = r.header("set-cookie")
    assert sc and sc.startswith("figment_sid=") and ("0" * 32) not in sc
    assert "HttpOnly" in sc and "SameSite=Lax" in sc
    # and the new cookie then works: no further Set-Cookie
    assert b.get("/mail/").header("set-cookie") is None


def test_upstream_500_refused_and_truncated_give_error_pages(figment, fakellm, workdir):
    b = figment.browser()
    fakellm.set_script({"rules": [{"match": ".", "fault": {"status": 500}}]})
    r = b.get("/mail/folder/inbox?x=1")
    assert r.status == 502
    assert "500" in r.text and 'href="/mail/folder/inbox?x=1"' in r.text  # retry link
    assert r.header("set-cookie") is not None or True

    fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# " + "long page " * 50},
                                   "fault": {"truncate_after_chunks": 3}}]})
    r = b.get("/mail/")
    assert r.status == 502 and "truncated" in r.text

    fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# x\n"},
                                   "fault": {"malformed_chunk": True}}]})
    r = b.get("/mail/")
    assert r.status == 502 and "malformed" in r.text

    # still serving afterwards; after this many failures (500 retried 3 times, then two
    # broken streams) the provider's circuit breaker is open, and says so at once
    fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# Fine\n"}}]})
    assert b.get("/").status == 200
    fakellm.clear()
    r = b.get("/mail/")
    assert r.status == 502 and "circuit breaker open" in r.text
    assert fakellm.requests() == []


def test_refused_connection_gives_502(workdir):
    import socket
    import harness
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    fig = harness.Figment(workdir, llm_url=f"http://127.0.0.1:{port}/v1")
    try:
        r = fig.browser().get("/mail/")
        assert r.status == 502
        assert "could not connect" in r.text
    finally:
        fig.stop()


def test_error_leaves_the_session_untouched(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": "path: /mail/a", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"broken": True}}}]}},
        {"match": "path: /mail/a", "fault": {"status": 400}},  # not retried: the breaker stays closed
        {"match": ".", "reply": {"content": "# Ok\n"}},
    ]})
    b = figment.browser()
    assert b.get("/mail/b").status == 200
    assert b.get("/mail/a").status == 502
    fakellm.clear()
    assert b.get("/mail/b").status == 200
    text = user_text(fakellm.requests()[0])
    assert "session_state: {}" in text and "/mail/a" not in text


def test_malformed_tool_arguments_go_back_to_the_model(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0, "reply": {"tool_calls": [{"name": "sql", "arguments": "{\"query\": \"SEL"}]}},
        {"match": ".", "tool_results": 1, "last_tool_result_match": "not valid JSON",
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT count(*) AS n FROM messages"}}]}},
        {"match": ".", "tool_results": 2, "reply": {"content": "# Recovered\n\n{{last_tool_result}}\n"}},
    ]})
    r = figment.browser().get("/mail/")
    assert r.status == 200, r.text
    assert "Recovered" in r.text
    assert len(fakellm.requests()) == 3


def test_sql_tool_refuses_schema_changes_and_the_model_sees_why(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "DROP TABLE messages"}}]}},
        {"match": ".", "tool_results": 1, "reply": {"content": "# Result\n\n{{last_tool_result}}\n"}},
    ]})
    r = figment.browser().get("/mail/")
    assert r.status == 200
    assert "error:" in r.text
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT count(*) AS n FROM messages"}}]}},
        {"match": ".", "tool_results": 1, "reply": {"content": "# Count\n\n{{last_tool_result}}\n"}},
    ]})
    r = figment.browser().get("/mail/")
    n = int(re.search(r"n\s*\|?\s*\n?\s*(\d+)", r.text.split("Count", 1)[1]).group(1))
    assert n >= 40


def test_unknown_tool_goes_back_to_the_model(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0, "reply": {"tool_calls": [{"name": "rm_rf", "arguments": {}}]}},
        {"match": ".", "tool_results": 1, "reply": {"content": "# Tool said\n\n{{last_tool_result}}\n"}},
    ]})
    r = figment.browser().get("/notes/")
    assert r.status == 200 and "no tool named" in r.text


def test_tool_rounds_are_bounded(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": ".", "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT 1"}}]}},
    ]})
    r = figment.browser().get("/mail/")
    assert r.status == 502 and "still calling tools" in r.text
    assert len(fakellm.requests()) <= 8


def test_the_prompt_prefix_is_byte_stable(figment, fakellm):
    fakellm.set_script(INBOX_SCRIPT)
    b = figment.browser()
    b.get("/mail/")
    b.get("/mail/message/2")
    figment.browser().get("/mail/message/3")
    reqs = fakellm.requests()
    assert len(reqs) >= 4
    prefixes = {json.dumps([r["messages"][0], r.get("tools"), r["model"]], sort_keys=False) for r in reqs}
    assert len(prefixes) == 1
    system = reqs[0]["messages"][0]
    assert system["role"] == "system"
    assert "# App: Mail (/mail/)" in system["content"]
    assert "CREATE TABLE" in system["content"]
    assert [t["function"]["name"] for t in reqs[0]["tools"]] == ["sql", "set_state"]


def test_security_headers_and_sanitized_model_output(figment, fakellm):
    fakellm.set_script({"rules": [{"match": ".", "reply": {"content":
        "# Evil\n\n<script>alert(1)</script><img src=x onerror=alert(2)>"
        "<a href=\"javascript:alert(3)\">j</a><iframe src=\"https://evil.example\"></iframe>"
        "<form method=\"post\" action=\"https://evil.example/steal\"><input name=q></form>\n"}}]})
    r = figment.browser().get("/mail/")
    assert r.status == 200
    csp = r.header("content-security-policy")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-frame-options") == "DENY"
    assert r.header("cache-control") == "no-store"
    low = r.text.lower()
    assert "<script>alert" not in low and "onerror" not in low and "javascript:" not in low
    assert "<iframe" not in low and "evil.example" not in low


def test_gallery_404_and_redirect(figment, fakellm):
    b = figment.browser()
    r = b.get("/")
    assert r.status == 200
    assert 'href="/mail/"' in r.text and 'href="/notes/"' in r.text
    assert b.get("/nope/").status == 404
    r = b.get("/mail")
    assert r.status == 301 and r.header("location") == "/mail/"
    assert b.request("PUT", "/mail/x", body="a").status == 405
    css = b.get("/static/app.css")
    assert css.status == 200 and css.header("content-type").startswith("text/css")
    assert b.get("/static/nope.css").status == 404
    assert fakellm.requests() == []


def test_unsupported_content_type_is_415(figment, fakellm):
    b = figment.browser()
    r = b.request("POST", "/mail/x", body="{}", headers={"Content-Type": "application/json"})
    assert r.status == 415


def test_deadline_gives_504(workdir, fakellm, tmp_path):
    import shutil
    import harness
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    shutil.copy(harness.ROOT + "/prompts/system.md", prompts / "system.md")
    app = prompts / "quick"
    app.mkdir()
    (app / "app.json").write_text(json.dumps({"title": "Quick", "description": "A short deadline.",
                                              "limits": {"deadline_ms": 1000}}))
    (app / "prompt.md").write_text("A test app.\n")
    fig = harness.Figment(workdir, llm_url=fakellm.base_url, prompts=str(prompts))
    try:
        fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# Late\n"}, "fault": {"stall_ms": 5000}}]})
        import time
        t0 = time.time()
        r = fig.browser().get("/quick/")
        assert r.status == 504
        assert time.time() - t0 < 4 * SLOW
        assert "took too long" in r.text
    finally:
        fig.stop()


def test_two_tool_calls_in_one_round_both_reach_the_model(figment, fakellm):
    # regression: the second call's result was once freed by the first call's completion
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0, "reply": {"tool_calls": [
            {"name": "sql", "arguments": {"query": "SELECT count(*) AS n FROM messages"}},
            {"name": "sql", "arguments": {"query": "SELECT count(*) AS a FROM attachments"}}]}},
        {"match": ".", "tool_results": 2, "reply": {"content": "# Two\n"}},
    ]})
    b = figment.browser()
    for _ in range(20):
        fakellm.clear()
        assert b.get("/mail/").status == 200
        results = [m["content"] for m in fakellm.requests()[1]["messages"] if m["role"] == "tool"]
        assert len(results) == 2
        assert results[0].startswith("n\n") and results[1].startswith("a\n"), results


def test_clients_that_leave_mid_interaction_leave_nothing_behind(figment, fakellm):
    # HTTP/1 gives no sign of a closed client until figment writes to it (h2o reads no
    # more after the request), so today these interactions run to the end and their
    # answer is discarded on the write; the page shell streamed early (a later issue)
    # will notice sooner and cancel the model call. What must hold now: nothing crashes
    # or leaks (checked under ASan when figment stops), descriptors come back, and
    # figment keeps serving.
    import socket
    import time
    fakellm.set_script({"rules": [{"match": "path: /mail/slow", "ttft_ms": 1000, "reply": {"content": "# Slow\n"}},
                                  {"match": ".", "reply": {"content": "# Fast\n"}}]})
    b = figment.browser()
    assert b.get("/mail/").status == 200
    cookie = "; ".join(f"{k}={v}" for k, v in b.cookies.items())
    baseline = figment.fd_count()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", figment.port))
        s.sendall(f"GET /mail/slow HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        time.sleep(0.1 * SLOW)
        s.close()
    time.sleep(2 * SLOW)
    assert len([r for r in fakellm.requests() if "path: /mail/slow" in r["messages"][-1]["content"]]) == 5
    assert b.get("/mail/").status == 200
    deadline = time.time() + 5 * SLOW
    while time.time() < deadline and figment.fd_count() > baseline + 16:
        time.sleep(0.1)
    assert figment.fd_count() <= baseline + 16
