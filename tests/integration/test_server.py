"""figment as a process: start-up checks, no-model mode, the render command, concurrency."""
import json
import os
import shutil
import subprocess
import threading

import harness
from harness import BUILD, ROOT, SLOW


def test_without_a_model_pages_answer_503_naming_the_variables(workdir):
    fig = harness.Figment(workdir)
    try:
        b = fig.browser()
        r = b.get("/mail/")
        assert r.status == 503
        assert "OPENAI_API_KEY" in r.text and "OPENAI_BASE_URL" in r.text
        g = b.get("/")
        assert g.status == 200 and "No language model is configured" in g.text
    finally:
        fig.stop()
    assert "no language model configured" in fig.log()


def test_an_invalid_app_json_stops_start_up_with_a_message_naming_the_key(workdir, tmp_path):
    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts)
    cfg = json.loads((prompts / "notes" / "app.json").read_text())
    cfg.setdefault("limits", {})["deadlin_ms"] = 5
    (prompts / "notes" / "app.json").write_text(json.dumps(cfg))
    p = subprocess.run([os.path.join(BUILD, "figment"), "serve", "--listen", "127.0.0.1:0", "--prompts", str(prompts),
                        "--var", str(tmp_path / "var")], capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode != 0
    assert "notes/app.json" in p.stderr and "limits.deadlin_ms" in p.stderr


def test_unknown_flag_is_an_error():
    p = subprocess.run([os.path.join(BUILD, "figment"), "serve", "--lisen", "x"], capture_output=True, text=True)
    assert p.returncode == 2 and "--lisen" in p.stderr


def test_render_command_prints_sanitized_html(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Hello\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>alert(1)</script><b onclick=x>bold</b>\n")
    p = subprocess.run([os.path.join(BUILD, "figment"), "render", str(page)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "<h1>Hello</h1>" in p.stdout and "<table>" in p.stdout and "<b>bold</b>" in p.stdout
    assert "script" not in p.stdout and "onclick" not in p.stdout
    p2 = subprocess.run([os.path.join(BUILD, "figment"), "render"], input="*x*", capture_output=True, text=True)
    assert p2.returncode == 0 and "<em>x</em>" in p2.stdout


def test_multipart_form_fields_reach_the_model(figment, fakellm):
    fakellm.set_script({"rules": [{"match": ".", "reply": {"content": "# Page\n\n<form method=post><input name=a></form>"}}]})
    b = figment.browser()
    page = b.get("/notes/")
    token = page.csrf()
    boundary = "----figmentboundary"
    fields = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{token}\r\n"
              f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nShopping\r\n")
    fakellm.clear()
    r = b.request("POST", "/notes/new", body=(fields + f"--{boundary}--\r\n").encode(),
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 200, r.text
    text = [m for m in fakellm.requests()[0]["messages"] if m["role"] == "user"][-1]["content"]
    assert '"title":"Shopping"' in text and "_csrf" not in text
    assert "uploads:" not in text  # notes takes no files: the prompt does not mention them
    # a file sent to an app without uploads is refused before the model is asked
    fakellm.clear()
    body = (fields + f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--{boundary}--\r\n")
    r = b.request("POST", "/notes/new", body=body.encode(),
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 413 and "does not accept files" in r.text
    assert fakellm.requests() == []


def test_200_concurrent_interactions_complete_and_leave_nothing_open(figment, fakellm):
    import time
    fakellm.set_script({"rules": [
        {"match": ".", "tool_results": 0, "ttft_ms": 50,
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT count(*) FROM messages"}}]}},
        {"match": ".", "tool_results": 1, "reply": {"content": "# Count\n\n{{last_tool_result}}\n"}},
    ]})
    b = figment.browser()
    assert b.get("/mail/").status == 200
    baseline = figment.fd_count()

    def burst():
        results = []
        lock = threading.Lock()

        def one():
            r = b.get("/mail/", timeout=60)
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=one) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(200) == 200, sorted(set(results))

    def settled(bound):
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline and figment.fd_count() > bound:
            time.sleep(0.1)
        return figment.fd_count()

    # What may stay open: curl's idle upstream cache (16 per loop thread, 2 threads) and
    # each worker's SQLite files (4 workers x session store and app db, with WAL and shm).
    bound = baseline + 2 * 16 + 4 * 6
    burst()
    after_first = settled(bound)
    assert after_first <= bound, (baseline, after_first)
    burst()
    after_second = settled(after_first)
    # a second identical burst opens nothing new: no connection or handle leaks
    assert after_second <= after_first, (after_first, after_second)


def test_sigterm_drains_in_flight_interactions_and_exits_cleanly(workdir, fakellm):
    # a deploy's restart: the page being generated still gets its answer, a browser's
    # idle keep-alive connection does not crash the shutdown, and figment exits 0
    # (under ASan: without leaks or errors)
    import http.client
    import signal
    import time
    fakellm.set_script({"rules": [{"match": "path: /mail/slow", "ttft_ms": 1000, "reply": {"content": "# Slow\n"}},
                                  {"match": ".", "reply": {"content": "# Fast\n"}}]})
    fig = harness.Figment(workdir, llm_url=fakellm.base_url)
    idle = http.client.HTTPConnection("127.0.0.1", fig.port, timeout=20 * SLOW)
    idle.request("GET", "/mail/")
    first = idle.getresponse()
    first.read()
    assert first.status == 200  # this connection now idles, kept alive
    results = []

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", fig.port, timeout=20 * SLOW)
        c.request("GET", "/mail/slow")
        r = c.getresponse()
        results.append((r.status, r.read()))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4 * SLOW)  # the slow interaction is waiting for the model
    fig.proc.send_signal(signal.SIGTERM)
    t.join()
    assert results and results[0][0] == 200 and b"Slow" in results[0][1]
    fig.proc.wait(timeout=20 * SLOW)
    idle.close()
    fig.stop()  # checks exit code 0 and the sanitizer report


def test_shipped_apps_pass_the_seed_checks():
    # tests/apps/check_seeds.sh: seeds load, app.json keys known, example domains only, ...
    p = subprocess.run(["bash", os.path.join(ROOT, "tests", "apps", "check_seeds.sh")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_attempt_scratch_copies_left_by_a_crash_are_removed_at_start(figment):
    stale = os.path.join(figment.var, "attempts", "0123-1")
    os.makedirs(stale)
    with open(stale + ".db", "w") as f:
        f.write("scratch")
    figment.restart()
    assert not os.path.exists(os.path.join(figment.var, "attempts"))
