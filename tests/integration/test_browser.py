"""A real browser (Debian's Chromium, driven by tests/browser/mail_flow.js through
playwright-core) goes through the mail app against the real figment, whose model is
fakellm playing tests/browser/mail.fakellm.json. Each flow runs twice: with JavaScript
(static/app.js swaps pages in place) and without (plain links and forms).
tests/browser/app_js.js checks app.js's fallbacks against a small server of its own.

The mail app is used from a copy of prompts/ (system.md and mail/ only) whose mail/app.json gets sql write access
and confirmation of DELETE, so the test states what it needs whatever the shipped
app.json says. Screenshots of every step are kept in $FIGMENT_ARTIFACTS (default
build/test-artifacts/browser/).

Without Chromium (/usr/bin/chromium, or $FIGMENT_CHROMIUM) the tests skip and say so;
a missing playwright-core is a failure (`make test` installs tests/npm).
"""
import json
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

import harness
from harness import ROOT, SLOW

CHROMIUM = os.environ.get("FIGMENT_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.path.join(ROOT, "tests", "browser", "mail_flow.js")
APP_JS_CHECKS = os.path.join(ROOT, "tests", "browser", "app_js.js")
SCRIPT = os.path.join(ROOT, "tests", "browser", "mail.fakellm.json")
PLAYWRIGHT = os.path.join(ROOT, "tests", "npm", "node_modules", "playwright-core", "package.json")
ARTIFACTS = os.environ.get("FIGMENT_ARTIFACTS", os.path.join(ROOT, "build", "test-artifacts", "browser"))


def _chromium_problem():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FIGMENT_CHROMIUM)"
    try:
        p = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{CHROMIUM} --version failed: {e}"
    if p.returncode != 0 or "Chromium" not in p.stdout:
        return f"{CHROMIUM} --version failed ({p.returncode}): {(p.stdout + p.stderr)[:300]}"
    return None


@pytest.fixture(scope="module")
def browser_ready():
    problem = _chromium_problem()
    if problem:
        pytest.skip(f"browser tests need Chromium: {problem}")
    assert shutil.which("node"), "node is missing (.ci/install-deps installs it)"
    assert os.path.exists(PLAYWRIGHT), "playwright-core is missing: run `make test-peers` or `npm ci` in tests/npm"


def _mail_prompts(workdir):
    """prompts/ with only the mail app, allowed to write, DELETE confirmed by the user."""
    dst = os.path.join(workdir, "prompts")
    os.makedirs(dst)
    shutil.copy(os.path.join(ROOT, "prompts", "system.md"), dst)
    shutil.copytree(os.path.join(ROOT, "prompts", "mail"), os.path.join(dst, "mail"))
    path = os.path.join(dst, "mail", "app.json")
    with open(path) as f:
        app = json.load(f)
    app.setdefault("tools", {})["sql"] = {"access": "write"}
    app["confirm"] = [{"tool": "sql", "operation": "DELETE"}]
    with open(path, "w") as f:
        json.dump(app, f, indent=2)
    return dst


@pytest.fixture
def site(workdir, browser_ready):
    with open(SCRIPT) as f:
        script = json.load(f)
    llm = harness.FakeLLM(workdir, script)
    fig = None
    try:
        fig = harness.Figment(workdir, llm_url=llm.base_url, prompts=_mail_prompts(workdir))
        yield fig
    finally:
        if fig is not None:
            fig.stop()
        llm.stop()


def _drive(fig, flow, js):
    os.makedirs(ARTIFACTS, exist_ok=True)
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    argv = ["node", DRIVER, "--base", f"http://127.0.0.1:{fig.port}", "--flow", flow, "--js", "on" if js else "off",
            "--artifacts", ARTIFACTS, "--chromium", CHROMIUM, "--slow", str(SLOW)]
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240 * SLOW, env=env, cwd=ROOT)
    took = time.time() - t0
    assert p.returncode == 0, (f"{flow} flow, JavaScript {'on' if js else 'off'}: exit {p.returncode} after "
                               f"{took:.1f} s\n{p.stdout}\n{p.stderr}\n--- figment log (tail) ---\n{fig.log()[-3000:]}\n"
                               f"screenshots: {ARTIFACTS}")
    assert f"browser flow {flow} " in p.stdout and " ok: " in p.stdout, p.stdout
    print(p.stdout.strip().splitlines()[-1])


def _db(fig):
    return sqlite3.connect(os.path.join(fig.var, "apps", "mail.db"))


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_mail_flow_in_a_browser(site, js):
    """Inbox, open a message, back, forward, mark unread (POST), search (GET), back."""
    with _db(site) as db:
        assert db.execute("SELECT unread FROM messages WHERE id = 46").fetchone() == (0,)
    _drive(site, "main", js)
    with _db(site) as db:  # the POST form really ran the model's UPDATE
        assert db.execute("SELECT unread FROM messages WHERE id = 46").fetchone() == (1,)


# Depends on figment's confirmation of destructive tool calls (server/confirm.c and its
# wiring in the agent loop): until that lands, this test fails at the "delete-asks" step.
@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_delete_with_confirmation_in_a_browser(site, js):
    """Delete asks on figment's own page; Cancel keeps the message, Confirm deletes it."""
    _drive(site, "delete", js)
    with _db(site) as db:
        assert db.execute("SELECT count(*) FROM messages WHERE id = 43").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM messages WHERE id = 46").fetchone() == (1,)


def test_app_js_fallbacks_in_a_browser(browser_ready):
    """Non-HTML answers, redirects out of the app, foreign POST answers (never posted
    twice), multipart with a file and the submitter, modified clicks, stale answers."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    argv = ["node", APP_JS_CHECKS, "--artifacts", ARTIFACTS, "--chromium", CHROMIUM, "--slow", str(SLOW)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=180 * SLOW, cwd=ROOT,
                       env=dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1"))
    assert p.returncode == 0 and "app.js checks ok" in p.stdout, f"{p.stdout}\n{p.stderr}\nscreenshots: {ARTIFACTS}"
