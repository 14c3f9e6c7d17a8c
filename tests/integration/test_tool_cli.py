"""`figment tool`: one tool call from the command line, exactly as the model would make it.

Each test builds a tiny prompts dir (in the style of prompts/notes) and runs the real
binary from $FIGMENT_BUILD; no server, no model.
"""
import json
import os
import sqlite3
import subprocess

import pytest

from harness import BUILD, SANITIZER_MARKS, SLOW

SEED = """CREATE TABLE tasks (
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  done INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tasks (id, title, done) VALUES
(1, 'Buy milk', 0),
(2, 'Call Sam', 1),
(3, 'File taxes', 0);
"""

APPS = {
    # read-only SQL, no other tool
    "reader": {"title": "Reader", "description": "Reads the task list.", "tools": {"sql": {"access": "read"}}},
    # SQL and the session state
    "memo": {"title": "Memo", "description": "Remembers things in the session state.",
             "tools": {"sql": {"access": "read"}, "set_state": {}}, "limits": {"max_state_bytes": 1024}},
}

WRITE_APP = {"title": "Tasks", "description": "Edits the task list; deleting asks first.",
             "tools": {"sql": {"access": "write"}}, "confirm": [{"tool": "sql", "operation": "DELETE"}]}


def make_app(prompts, name, cfg):
    d = prompts / name
    d.mkdir(parents=True)
    (d / "app.json").write_text(json.dumps(cfg, indent=2))
    (d / "prompt.md").write_text(f"# {cfg['title']}\n\n{cfg['description']}\n")
    (d / "seed.sql").write_text(SEED)


@pytest.fixture
def env(tmp_path):
    prompts = tmp_path / "prompts"
    for name, cfg in APPS.items():
        make_app(prompts, name, cfg)
    return {"prompts": prompts, "var": tmp_path / "var", "tmp": tmp_path}


def run_tool(env, *argv, app="reader", extra=()):
    cmd = [os.path.join(BUILD, "figment"), "tool", *argv, "--app", app, "--prompts", str(env["prompts"]),
           "--var", str(env["var"]), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30 * SLOW)
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, p.stderr
    return p


def test_sql_select_prints_the_table(env):
    p = run_tool(env, "sql", '{"query": "SELECT id, title FROM tasks WHERE done = 0 ORDER BY id"}')
    assert p.returncode == 0, p.stderr
    assert p.stdout == "id | title\n1 | Buy milk\n3 | File taxes\n(2 rows)\n"
    # the database was built from seed.sql under --var
    assert (env["var"] / "apps" / "reader.db").is_file()


def test_sql_error_is_the_tools_error_text(env):
    p = run_tool(env, "sql", '{"query": "SELECT nope FROM tasks"}')
    assert p.returncode == 1
    assert p.stdout.startswith("error: ") and "nope" in p.stdout


def test_bad_json_arguments_are_a_tool_error_like_the_models(env):
    p = run_tool(env, "sql", '{"query": ')
    assert p.returncode == 1, p.stderr
    assert p.stdout.startswith("error: the arguments are not valid JSON")
    # valid JSON that does not match the schema: the tool's own message
    p = run_tool(env, "sql", '{"q": "SELECT 1"}')
    assert p.returncode == 1 and p.stdout.startswith("error: expected {\"query\"")


def test_read_app_refuses_writes(env):
    p = run_tool(env, "sql", '{"query": "DELETE FROM tasks"}')
    assert p.returncode == 1 and p.stdout.startswith("error: ")
    c = sqlite3.connect(env["var"] / "apps" / "reader.db")
    assert c.execute("SELECT count(*) FROM tasks").fetchone()[0] == 3
    c.close()


def test_unknown_tool_is_a_usage_error(env):
    p = run_tool(env, "frobnicate", "{}")
    assert p.returncode == 2
    assert "frobnicate" in p.stderr and "sql" in p.stderr
    assert p.stdout == ""


def test_tool_the_app_does_not_allow_is_a_usage_error_naming_the_allowed_ones(env):
    p = run_tool(env, "set_state", '{"patch": {"a": 1}}', app="reader")
    assert p.returncode == 2
    assert "does not allow" in p.stderr and "set_state" in p.stderr and "allows: sql" in p.stderr


def test_usage_errors(env):
    assert run_tool(env, "sql", app="reader").returncode == 2  # no arguments
    p = run_tool(env, "sql", "{}", app="nosuchapp")
    assert p.returncode == 2 and "nosuchapp" in p.stderr
    p = run_tool(env, "sql", "{}", extra=["--bogus"])
    assert p.returncode == 2 and "--bogus" in p.stderr
    p = run_tool(env, "sql", '{"query": "SELECT 1"}', extra=["--session", "../../etc"])
    assert p.returncode == 2 and "--session" in p.stderr
    p = run_tool(env, "set_state", '{"patch": {}}', app="memo", extra=["--state", "[1]"])
    assert p.returncode == 2 and "--state" in p.stderr


def test_list_shows_the_apps_tools(env):
    p = run_tool(env, "--list", app="memo")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "sql" and "set_state" in lines
    assert "Run one SQLite statement" in p.stdout and "merge patch" in p.stdout
    p = run_tool(env, "--list", app="reader")
    assert "set_state" not in p.stdout


def test_set_state_prints_the_merged_state(env):
    p = run_tool(env, "set_state", '{"patch": {"b": 2, "a": null, "c": {"y": 2}}}', app="memo",
                 extra=["--state", '{"a": 1, "c": {"x": 1}}'])
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'ok; state is now {"b":2,"c":{"x":1,"y":2}}\n'
    # without --state the patch applies to {}
    p = run_tool(env, "set_state", '{"patch": {"k": "v"}}', app="memo")
    assert p.returncode == 0 and p.stdout == 'ok; state is now {"k":"v"}\n'
    # over the app's max_state_bytes: the tool's error, exit 1
    p = run_tool(env, "set_state", json.dumps({"patch": {"big": "x" * 2000}}), app="memo")
    assert p.returncode == 1 and p.stdout.startswith("error: ") and "1024" in p.stdout


# ---- writes and confirmation (tools.sql.access "write", "confirm") ----

def count_rows(env, where):
    c = sqlite3.connect(env["var"] / "apps" / "tasks.db")
    try:
        return c.execute(f"SELECT count(*) FROM tasks WHERE {where}").fetchone()[0]
    finally:
        c.close()


def test_delete_needs_confirmation_and_runs_with_confirm(env):
    make_app(env["prompts"], "tasks", WRITE_APP)
    p = run_tool(env, "sql", '{"query": "DELETE FROM tasks WHERE id = 2"}', app="tasks")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert p.stdout.startswith("needs confirmation:")
    assert "DELETE" in p.stdout
    assert count_rows(env, "id = 2") == 1  # nothing was done

    p = run_tool(env, "sql", '{"query": "DELETE FROM tasks WHERE id = 2"}', app="tasks", extra=["--confirm"])
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "1 row" in p.stdout
    assert count_rows(env, "id = 2") == 0
    assert count_rows(env, "1") == 2


def test_writes_without_a_confirm_rule_run_at_once(env):
    make_app(env["prompts"], "tasks", WRITE_APP)
    p = run_tool(env, "sql", '{"query": "UPDATE tasks SET done = 1 WHERE id = 1"}', app="tasks")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert count_rows(env, "id = 1 AND done = 1") == 1
    p = run_tool(env, "sql", '{"query": "INSERT INTO tasks (title) VALUES (\'New\')"}', app="tasks")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert count_rows(env, "title = 'New'") == 1


# ---- an asynchronous tool (http_fetch runs on a private event loop) ----

def test_http_fetch_runs_on_its_own_loop(env):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the fetch test\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        make_app(env["prompts"], "fetcher", {
            "title": "Fetcher", "description": "Fetches one page.",
            "tools": {"http_fetch": {"hosts": ["127.0.0.1"], "private_hosts": ["127.0.0.1"], "timeout_ms": 5000}}})
        url = f"http://127.0.0.1:{srv.server_address[1]}/page"
        p = run_tool(env, "http_fetch", json.dumps({"url": url}), app="fetcher")
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "hello from the fetch test" in p.stdout
        # a host off the allowlist: the tool's refusal, exit 1
        p = run_tool(env, "http_fetch", json.dumps({"url": "http://example.invalid/"}), app="fetcher")
        assert p.returncode == 1 and p.stdout.startswith("error: ")
    finally:
        srv.shutdown()
        srv.server_close()
