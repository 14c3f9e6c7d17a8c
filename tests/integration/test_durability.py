"""Sessions are saved behind the answer (server/session_writer.c): the page goes out once
the save is in the journal, and a crash of figment before the store commits it loses
nothing. FIGMENT_TEST_SESSION_COMMIT_DELAY_MS holds the writer's commits back, so the
crash (SIGKILL) lands in that window every time."""
import os
import signal
import sqlite3

import harness

LOGIN_SCRIPT = {"rules": [
    {"match": "path: /mail/login", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"user": "alex"}}}]}},
    {"match": ".", "reply": {"content": "# Page\n\nHello.\n"}},
]}


def user_text(req):
    return [m for m in req["messages"] if m["role"] == "user"][-1]["content"]


def journal_files(var):
    d = os.path.join(var, "journal")
    return sorted(f for f in os.listdir(d) if f.startswith("sessions-")) if os.path.isdir(d) else []


def store_rows(var, sql):
    db = sqlite3.connect(os.path.join(var, "figment.db"))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_crash_before_the_commit_loses_no_session_save(workdir, fakellm):
    fakellm.set_script(LOGIN_SCRIPT)
    fig = harness.Figment(workdir, llm_url=fakellm.base_url,
                          extra_env={"FIGMENT_TEST_SESSION_COMMIT_DELAY_MS": "60000"})
    b = fig.browser()
    assert b.get("/mail/login").status == 200
    assert b.get("/mail/inbox").status == 200
    # answered, but not in the store yet: only the journal has the two saves
    assert store_rows(fig.var, "SELECT count(*) FROM interactions") == [(0,)]
    files = journal_files(fig.var)
    assert len(files) == 1
    with open(os.path.join(fig.var, "journal", files[0])) as f:
        assert f.read().count("\n") == 2
    # the crash
    fig.proc.send_signal(signal.SIGKILL)
    fig.proc.wait()
    fig.stderr.close()

    # the next start replays the journal before it serves anything
    fig = harness.Figment(workdir, llm_url=fakellm.base_url)
    try:
        assert "replayed 2 session saves" in fig.log()
        rows = store_rows(fig.var, "SELECT seq, path FROM interactions ORDER BY seq")
        assert rows == [(1, "/mail/login"), (2, "/mail/inbox")]
        assert store_rows(fig.var, "SELECT count(*) FROM usage") == [(2,)]
        b.port = fig.port
        fakellm.clear()
        r = b.get("/mail/")
        assert r.status == 200
        assert r.header("set-cookie") is None  # the same session
        text = user_text(fakellm.requests()[0])
        assert 'session_state: {"user":"alex"}' in text
        assert "GET /mail/login" in text and "GET /mail/inbox" in text  # the history came back too
    finally:
        fig.stop()
    # a clean stop commits everything and leaves no journal behind
    assert journal_files(fig.var) == []
    assert store_rows(fig.var, "SELECT count(*) FROM interactions") == [(3,)]


def test_a_clean_stop_commits_what_is_waiting(workdir, fakellm):
    fakellm.set_script(LOGIN_SCRIPT)
    fig = harness.Figment(workdir, llm_url=fakellm.base_url,
                          extra_env={"FIGMENT_TEST_SESSION_COMMIT_DELAY_MS": "60000"})
    b = fig.browser()
    assert b.get("/mail/login").status == 200
    assert store_rows(fig.var, "SELECT count(*) FROM interactions") == [(0,)]
    fig.stop()  # SIGTERM: the writer stops waiting and commits
    assert store_rows(fig.var, "SELECT state FROM sessions") == [('{"user":"alex"}',)]
    assert journal_files(fig.var) == []
    assert "replayed" not in fig.log()


def test_the_newest_state_is_read_before_it_is_committed(workdir, fakellm):
    # interactions of one session follow each other faster than the writer commits:
    # each sees the state the one before set (the session cache holds it, pinned)
    fakellm.set_script({"rules": [
        {"match": "path: /mail/step/1\n", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"step": 1}}}]}},
        {"match": "path: /mail/step/2\n", "tool_results": 0,
         "reply": {"tool_calls": [{"name": "set_state", "arguments": {"patch": {"step": 2}}}]}},
        {"match": ".", "reply": {"content": "# Step\n"}},
    ]})
    fig = harness.Figment(workdir, llm_url=fakellm.base_url,
                          extra_env={"FIGMENT_TEST_SESSION_COMMIT_DELAY_MS": "60000"})
    try:
        b = fig.browser()
        assert b.get("/mail/step/1").status == 200
        fakellm.clear()
        assert b.get("/mail/step/2").status == 200
        assert 'session_state: {"step":1}' in user_text(fakellm.requests()[0])
        fakellm.clear()
        assert b.get("/mail/").status == 200
        assert 'session_state: {"step":2}' in user_text(fakellm.requests()[0])
        assert store_rows(fig.var, "SELECT count(*) FROM interactions") == [(0,)]
    finally:
        fig.stop()
    assert store_rows(fig.var, "SELECT seq, state FROM sessions") == [(3, '{"step":2}')]


def test_a_second_figment_on_the_same_var_is_refused(workdir, fakellm):
    import subprocess
    fakellm.set_script(LOGIN_SCRIPT)
    fig = harness.Figment(workdir, llm_url=fakellm.base_url)
    try:
        # it would replay and commit the first one's journal a second time
        second = subprocess.run(fig.argv, env=fig.env, capture_output=True, text=True, timeout=30 * harness.SLOW)
        assert second.returncode != 0
        assert "in use by another figment" in second.stderr
        assert fig.browser().get("/mail/login").status == 200  # the first one is unharmed
    finally:
        fig.stop()
