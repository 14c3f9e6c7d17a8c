"""The operator's pages at /_figment/ and the feedback form, end to end: real figment
(with FIGMENT_OPERATOR_TOKEN) + fakellm scripted with a tool call."""
import re
import time
import urllib.parse

import pytest

import harness
from harness import SLOW

TOKEN = "op-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INBOX_SQL = "SELECT id, subject FROM messages ORDER BY id LIMIT 2"

SCRIPT = {"rules": [
    {"name": "inbox-query", "match": "path: /mail/\n", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": INBOX_SQL}}]}},
    {"name": "inbox-page", "match": "path: /mail/\n", "tool_results": 1,
     "reply": {"content": "# Inbox\n\n<pre>{{last_tool_result}}</pre>\n"}},
    {"name": "evil", "match": "path: /mail/evil",
     "reply": {"content": "# Evil\n\n<script>alert(1)</script>\n\nEVILMARK <b>bold</b>\n"}},
]}


@pytest.fixture
def fig(workdir, fakellm):
    fakellm.set_script(SCRIPT)
    f = harness.Figment(workdir, llm_url=fakellm.base_url, extra_env={"FIGMENT_OPERATOR_TOKEN": TOKEN})
    yield f
    f.stop()


def interact(fig, path="/mail/", browser=None):
    b = browser or fig.browser()
    r = b.get(path)
    assert r.status == 200, r.text
    tid = r.header("x-trace-id")
    assert tid and re.fullmatch(r"[0-9a-f]{32}", tid), f"no X-Trace-Id on the app page: {tid!r}"
    return b, r, tid


def op_get(fig, path, headers=AUTH):
    return fig.browser().get(path, headers=headers)


def wait_trace(fig, tid):
    """Traces are written in batches; wait until this one is readable."""
    deadline = time.time() + 10 * SLOW
    while True:
        r = op_get(fig, f"/_figment/trace/{tid}")
        if r.status == 200 or time.time() > deadline:
            assert r.status == 200, f"trace {tid} never appeared: {r.status} {r.text[:500]}"
            return r
        time.sleep(0.05)


def test_operator_pages_need_the_token(fig):
    _, _, tid = interact(fig)
    wait_trace(fig, tid)
    paths = ("/_figment/", f"/_figment/trace/{tid}", "/_figment/charts", "/_figment/feedback",
             "/_figment/?app=mail", "/_figment/nonexistent")
    # wrong tokens count toward the per-address lockout (10 a minute): only a few here
    cases = [(p, h) for p in paths for h in ({}, {"Cookie": "figment_op=AAAA"})]
    cases += [("/_figment/", {"Authorization": "Bearer wrong-token"}),
              (f"/_figment/trace/{tid}", {"Authorization": f"Bearer {TOKEN}x"}),
              ("/_figment/charts", {"Authorization": f"Basic {TOKEN}"})]
    for path, headers in cases:
        r = op_get(fig, path, headers)
        assert r.status == 401, (path, headers, r.status)
        # the login page, never the data
        assert 'action="/_figment/login"' in r.text
        assert "/mail/" not in r.text and "fake-model" not in r.text and tid not in r.text
        assert "Inbox" not in r.text and "sql" not in r.text
        assert r.header("www-authenticate") == 'Bearer realm="figment"'
        assert r.header("cache-control") == "no-store"
        assert r.header("content-security-policy")


def test_list_shows_the_interaction_with_bearer(fig):
    _, _, tid = interact(fig)
    wait_trace(fig, tid)
    r = op_get(fig, "/_figment/")
    assert r.status == 200, r.text
    assert r.header("cache-control") == "no-store"
    assert r.header("content-security-policy")
    assert f'href="/_figment/trace/{tid}"' in r.text
    assert "GET /mail/" in r.text and "fake-model" in r.text
    assert "200 ok" in r.text
    # filters
    assert tid in op_get(fig, "/_figment/?app=mail&model=&outcome=ok&slow=&expensive=").text
    assert tid in op_get(fig, "/_figment/?app=mail&outcome=ok&slow=0&expensive=0").text
    assert tid not in op_get(fig, "/_figment/?outcome=budget").text
    assert tid not in op_get(fig, "/_figment/?app=notes").text
    assert tid not in op_get(fig, "/_figment/?slow=600000").text
    assert tid not in op_get(fig, "/_figment/?model=other%2Fmodel").text
    for bad in ("app=nope", "outcome=weird", "slow=abc", "slow=-5", "expensive=x", "page=0", "bogus=1",
                "app=mail&app=notes", "q=%ZZ"):
        r = op_get(fig, "/_figment/?" + bad)
        assert r.status == 400, (bad, r.status)
        assert tid not in r.text
    assert op_get(fig, "/_figment/trace/" + tid + "?x=1").status == 400
    assert op_get(fig, "/_figment/trace/" + "0" * 32).status == 404
    assert op_get(fig, "/_figment/trace/" + tid.upper()).status == 404
    assert op_get(fig, "/_figment/nowhere").status == 404
    r = fig.browser().request("DELETE", "/_figment/", headers=AUTH)
    assert r.status == 405


def test_trace_detail_shows_the_tool_call(fig, fakellm):
    _, _, tid = interact(fig)
    r = wait_trace(fig, tid)
    t = r.text
    assert f"Trace <code>{tid}</code>" in t
    assert "Tool calls (1)" in t
    assert "<h3>sql" in t
    assert INBOX_SQL in t                       # the input
    assert re.search(r"<pre>id \| subject\n", t)  # the output (the seeded rows)
    assert '<strong class="op-role">user</strong>' in t and "# Interaction" in t
    assert '<strong class="op-role">tool</strong>' in t
    assert "<h2>Answer (Markdown)</h2>" in t and "# Inbox" in t
    assert '<div class="op-preview">' in t


def test_model_script_is_escaped_in_the_detail_page(fig):
    _, page, tid = interact(fig, "/mail/evil")
    assert "<script>alert(1)</script>" not in page.text  # the app page itself was sanitized
    t = wait_trace(fig, tid).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in t  # the answer, shown as text
    # never a live script tag: the only one is figment's own file in the shell
    assert "<script" not in t.lower().replace('<script src="/static/app.js" defer></script>', "")
    preview = t.split('<div class="op-preview">', 1)[1].split("</div>", 1)[0]
    assert "EVILMARK <b>bold</b>" in preview            # the page rendered (sanitized) ...
    assert "EVILMARK &lt;b&gt;bold&lt;/b&gt;" in t      # ... and its source, escaped


def test_login_form_sets_a_cookie_that_works(fig):
    _, _, tid = interact(fig)
    wait_trace(fig, tid)
    b = fig.browser()
    r = b.get("/_figment/login")
    assert r.status == 200 and 'name="token"' in r.text and 'type="password"' in r.text
    r = b.post("/_figment/login", {"token": "not-it"}, csrf=False)
    assert r.status == 401 and "not right" in r.text
    assert "figment_op" not in b.cookies
    r = b.post("/_figment/login", {"token": TOKEN}, csrf=False)
    assert r.status == 303, r.text
    assert r.header("location") == "/_figment/"
    sc = r.header("set-cookie")
    assert sc.startswith("figment_op=")
    for attr in ("Path=/_figment/", "HttpOnly", "SameSite=Strict"):
        assert attr in sc, sc
    assert TOKEN not in sc  # an HMAC of the token, not the token
    r = b.get("/_figment/")
    assert r.status == 200 and tid in r.text
    # a tampered cookie does not
    b.cookies["figment_op"] = b.cookies["figment_op"][:-2] + ("AA" if not b.cookies["figment_op"].endswith("AA") else "BB")
    assert b.get("/_figment/").status == 401
    # strict form handling
    assert b.post("/_figment/login", {"token": TOKEN, "extra": "1"}, csrf=False).status == 400
    assert b.request("POST", "/_figment/login", body='{"token":"x"}',
                     headers={"Content-Type": "application/json"}).status == 415


def test_wrong_tokens_are_rate_limited(fig):
    b = fig.browser()
    for _ in range(10):
        assert b.post("/_figment/login", {"token": "guess"}, csrf=False).status == 401
    r = b.post("/_figment/login", {"token": TOKEN}, csrf=False)
    assert r.status == 429
    assert int(r.header("retry-after")) >= 1
    assert op_get(fig, "/_figment/", {"Authorization": f"Bearer {TOKEN}"}).status == 429


def test_charts_page_returns_svg(fig):
    _, _, tid = interact(fig)
    wait_trace(fig, tid)
    r = op_get(fig, "/_figment/charts")
    assert r.status == 200, r.text
    svgs = re.findall(r"<svg.*?</svg>", r.text, re.S)
    assert len(svgs) >= 3  # latency, cost, cache hit rate for mail and the model
    for s in svgs:
        assert "style=" not in s and "<script" not in s.replace('<script src="/static/app.js" defer></script>', "")
    assert "<polyline" in r.text or "<circle" in r.text
    assert "fake-model" in r.text
    assert op_get(fig, "/_figment/charts?hours=1&bucket_minutes=5").status == 200
    for bad in ("hours=0", "hours=169", "bucket_minutes=4", "bucket_minutes=1441", "hours=x", "bogus=1"):
        assert op_get(fig, "/_figment/charts?" + bad).status == 400, bad


def feedback_fields(page, tid, rating="down", comment="Wrong <b>total</b>", return_to="/mail/"):
    m = re.search(r'<form class="feedback" method="post" action="/_figment/feedback">(.*?)</form>', page.text, re.S)
    assert m, "the app page carries no feedback form"
    form = m.group(1)
    assert f'name="trace_id" value="{tid}"' in form
    assert 'name="rating" value="up"' in form and 'name="rating" value="down"' in form
    assert "Helpful" in form and "Not helpful" in form
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form).group(1)
    return {"trace_id": tid, "rating": rating, "comment": comment, "return_to": return_to, "_csrf": csrf}


def test_feedback_is_stored_and_shown(fig):
    b, page, tid = interact(fig)
    fields = feedback_fields(page, tid)
    wait_trace(fig, tid)
    r = b.post("/_figment/feedback", fields, csrf=False)
    assert r.status == 303, r.text
    assert r.header("location") == "/mail/"
    t = op_get(fig, f"/_figment/trace/{tid}").text
    assert "Feedback (1)" in t
    assert "Wrong &lt;b&gt;total&lt;/b&gt;" in t and "<b>total</b>" not in t
    assert "\U0001F44E down" in t
    lst = op_get(fig, "/_figment/feedback")
    assert lst.status == 200 and "Wrong &lt;b&gt;total&lt;/b&gt;" in lst.text and tid in lst.text
    assert "\U0001F44E down" in op_get(fig, "/_figment/").text
    # an up vote without a comment; an unsafe return_to goes to /
    r = b.post("/_figment/feedback", dict(fields, rating="up", comment="", return_to="//evil.example/"), csrf=False)
    assert r.status == 303 and r.header("location") == "/"
    assert "Feedback (2)" in op_get(fig, f"/_figment/trace/{tid}").text
    # the Location header stays plain ASCII
    r = b.post("/_figment/feedback", dict(fields, rating="up", return_to="/mail/caf\u00e9 x"), csrf=False)
    assert r.status == 303 and r.header("location") == "/mail/caf%C3%A9%20x"


def test_feedback_without_a_valid_csrf_token_is_refused(fig):
    b, page, tid = interact(fig)
    fields = feedback_fields(page, tid)
    wait_trace(fig, tid)
    no_csrf = {k: v for k, v in fields.items() if k != "_csrf"}
    assert b.post("/_figment/feedback", no_csrf, csrf=False).status == 403
    assert b.post("/_figment/feedback", dict(fields, _csrf="forged"), csrf=False).status == 403
    other, other_page, _ = interact(fig)
    assert b.post("/_figment/feedback", dict(fields, _csrf=other_page.csrf()), csrf=False).status == 403
    # no session cookie at all
    assert fig.browser().post("/_figment/feedback", fields, csrf=False).status == 403
    # malformed fields are 400 before anything else
    assert b.post("/_figment/feedback", dict(fields, trace_id="x" * 32), csrf=False).status == 400
    assert b.post("/_figment/feedback", dict(fields, rating="meh"), csrf=False).status == 400
    assert b.post("/_figment/feedback", dict(fields, comment="c" * 2001), csrf=False).status == 400
    # a trace that does not exist
    assert b.post("/_figment/feedback", dict(fields, trace_id="f" * 32), csrf=False).status == 404
    assert "Feedback (0)" in op_get(fig, f"/_figment/trace/{tid}").text


def test_operator_links_stay_under_figment(fig):
    _, _, tid = interact(fig)
    wait_trace(fig, tid)
    for path in ("/_figment/", f"/_figment/trace/{tid}", "/_figment/charts", "/_figment/feedback"):
        r = op_get(fig, path)
        main = r.text.split('<main id="page">', 1)[1].split("</main>", 1)[0]
        main = re.sub(r'<div class="op-preview">.*?\n</div>', "", main, flags=re.S)  # the app's own page
        for href in re.findall(r'href="([^"]*)"', main):
            assert urllib.parse.urlsplit(href.replace("&amp;", "&")).path.startswith("/_figment/"), (path, href)
