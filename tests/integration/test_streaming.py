"""Progressive pages: the shell before the model's first token, blocks as they are
written, failures told inside a page that has already started, and a client that
leaves cancelling the model call."""
import os
import socket
import sqlite3
import time

from harness import SLOW

SLOW_PAGE = ("# Slow page\n\nThe first block arrives early.\n\n"
             "A second block follows after a while, with enough words to take several deltas.\n\n"
             "<form method=\"post\" action=\"/mail/x\">\n\n<input name=\"q\">\n\n<button>Go</button>\n\n</form>\n\n"
             "The last block ends the page.\n")


def cookie_of(b):
    return "; ".join(f"{k}={v}" for k, v in b.cookies.items())


def open_stream(port, path, cookie=None, accept="text/html,application/xhtml+xml"):
    s = socket.create_connection(("127.0.0.1", port), timeout=30 * SLOW)
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    s.sendall((head + "\r\n").encode())
    return s


def read_timeline(s):
    """[(seconds since start, bytes)] until the server closes."""
    t0 = time.monotonic()
    out = []
    while True:
        data = s.recv(65536)
        if not data:
            break
        out.append((time.monotonic() - t0, data))
    s.close()
    return out


def dechunk(body):
    """The payload of a chunked HTTP/1.1 body."""
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


def first_time_containing(timeline, needle):
    acc = b""
    for t, data in timeline:
        acc += data
        if needle in acc:
            return t
    return None


def test_shell_arrives_before_the_first_token_and_blocks_stream(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": "path: /mail/slow", "ttft_ms": 2000, "chunk_chars": 12, "chunk_interval_ms": 40,
         "reply": {"content": SLOW_PAGE}},
        {"match": ".", "reply": {"content": "# Inbox\n"}},
    ]})
    b = figment.browser()
    assert b.get("/mail/").status == 200
    tl = read_timeline(open_stream(figment.port, "/mail/slow", cookie_of(b)))
    body = b"".join(d for _, d in tl)
    head, _, html = body.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"content-security-policy" in head.lower()
    shell_at = first_time_containing(tl, b'<div class="skeleton"')
    first_block_at = first_time_containing(tl, b"The first block arrives early.")
    last_block_at = first_time_containing(tl, b"The last block ends the page.")
    assert shell_at is not None and first_block_at is not None and last_block_at is not None
    # the shell is there long before the model's first token (2 s)
    assert shell_at < 1.0 * SLOW, shell_at
    assert first_block_at >= 1.9, first_block_at
    # blocks arrive one by one: the first well before the last (about 20 deltas of 40 ms apart)
    assert last_block_at - first_block_at > 0.3, (first_block_at, last_block_at)
    # the form with blank lines inside it was kept whole, and got its CSRF field
    assert b'<form method="post" action="/mail/x">' in html
    text = html.decode()
    form = text[text.index('<form method="post"'):text.index("</form>")]
    assert 'name="q"' in form and 'name="_csrf"' in form and "<button>Go</button>" in form
    assert text.rstrip().endswith("</html>\r\n0") or "</html>" in text
    # the page kept for the session is what was streamed, title included (no second render)
    fakellm.clear()
    assert b.get("/mail/").status == 200
    prompt = [m for m in fakellm.requests()[0]["messages"] if m["role"] == "user"][-1]["content"]
    assert "GET /mail/slow -> Slow page" in prompt
    kept, deadline = None, time.time() + 10 * SLOW
    while kept is None and time.time() < deadline:  # the session writer commits behind the answer
        db = sqlite3.connect(os.path.join(figment.var, "figment.db"))
        kept = db.execute("SELECT title, html FROM pages WHERE url = '/mail/slow'").fetchone()
        db.close()
        time.sleep(0.05)
    assert kept is not None and kept[0] == "Slow page"
    assert kept[1].startswith("<h1>Slow page</h1>") and "The last block ends the page." in kept[1]
    assert kept[1] in dechunk(html).decode()  # byte for byte the blocks the browser got


def test_programs_that_do_not_ask_for_html_get_one_response_with_the_real_status(figment, fakellm):
    fakellm.set_script({"rules": [{"match": ".", "fault": {"status": 400}}]})
    r = figment.browser().get("/mail/")
    assert r.status == 502
    assert "transfer-encoding" not in r.headers


def test_a_failure_after_the_shell_is_told_inside_the_page(figment, fakellm):
    fakellm.set_script({"rules": [{"match": ".", "fault": {"status": 400}}]})
    b = figment.browser()
    r = b.get("/mail/", headers={"Accept": "text/html"})
    assert r.status == 200  # the shell went out before the model failed
    assert '<section class="card error" role="alert">' in r.text
    assert "The model could not produce this page" in r.text
    assert r.text.rstrip().endswith("</html>")
    # figment's own record keeps the truth
    assert r.header("x-trace-id")


def test_a_client_that_leaves_cancels_the_model_call(figment, fakellm):
    fakellm.set_script({"rules": [
        {"match": "path: /mail/slow", "ttft_ms": 8000, "reply": {"content": "# Slow\n"}},
        {"match": ".", "reply": {"content": "# Inbox\n"}},
    ]})
    # a fresh figment has no pooled upstream connection: the only one is this call's
    s = open_stream(figment.port, "/mail/slow")
    got = b""
    while b'class="skeleton"' not in got:
        got += s.recv(65536)
    time.sleep(0.3 * SLOW)
    assert len(fakellm.requests()) == 1  # the model call is under way

    def upstream_connections():
        port_hex = f"{fakellm.port:04X}"
        n = 0
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name) as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[2].endswith(":" + port_hex) and cols[3] == "01":
                        n += 1
        return n

    assert upstream_connections() >= 1
    s.close()
    deadline = time.time() + 5 * SLOW
    while time.time() < deadline and upstream_connections() > 0:
        time.sleep(0.1)
    # cancelled within a few heartbeats, long before the model's 8 s first token
    assert upstream_connections() == 0
    assert figment.browser().get("/mail/").status == 200
