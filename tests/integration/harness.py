"""Starts the real figment and fakellm binaries on ephemeral loopback ports.

Used by the integration tests (conftest.py exposes fixtures). Binaries come from
$FIGMENT_BUILD (default: build/). Under the ASan build ($FIGMENT_SANITIZED=1), a
process that reports a sanitizer error fails the test when it is stopped.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("FIGMENT_BUILD", os.path.join(ROOT, "build"))
SANITIZED = os.environ.get("FIGMENT_SANITIZED") == "1"
SLOW = 3 if SANITIZED else 1  # time budgets stretch under ASan

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _wait_port_file(path, proc, what, timeout=15):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with {proc.returncode}")
        try:
            with open(path) as f:
                txt = f.read().strip()
            if txt:
                return int(txt)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not start in time")


class Proc:
    """A child process with its stderr captured to a file for later checks."""

    def __init__(self, argv, env, what, workdir):
        self.what = what
        self.workdir = workdir
        self.port_file = os.path.join(workdir, f"{what}.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.stderr_path = os.path.join(workdir, f"{what}.stderr")
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(argv + ["--port-file", self.port_file], env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, cwd=ROOT)
        self.port = _wait_port_file(self.port_file, self.proc, what)

    def log(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def stop(self, check=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.what} did not stop on SIGTERM")
        self.stderr.close()
        if check:
            log = self.log()
            for mark in SANITIZER_MARKS:
                assert mark not in log, f"{self.what} reported a sanitizer error:\n{log[-8000:]}"
            assert self.proc.returncode == 0, f"{self.what} exited with {self.proc.returncode}:\n{log[-4000:]}"

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class FakeLLM(Proc):
    def __init__(self, workdir, script, name="fakellm"):
        path = os.path.join(workdir, f"{name}-script.json")
        with open(path, "w") as f:
            json.dump(script, f)
        super().__init__([os.path.join(BUILD, "tests", "fakellm"), "--listen", "127.0.0.1:0", "--script", path],
                         dict(os.environ), name, workdir)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.root_url = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10 * SLOW)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        assert r.status == 200, f"fakellm {method} {path}: {r.status} {data[:500]!r}"
        return data

    def set_script(self, script):
        self._call("PUT", "/_fakellm/script", script)

    def requests(self):
        return json.loads(self._call("GET", "/_fakellm/requests"))

    def clear(self):
        self._call("DELETE", "/_fakellm/requests")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased name -> list of values
        self.body = body
        self.text = body.decode("utf-8", errors="replace")

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def csrf(self):
        m = re.search(r'name="_csrf" value="([^"]+)"', self.text)
        return m.group(1) if m else None


class Browser:
    """A tiny cookie-keeping HTTP client (one cookie: figment's session)."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, timeout=30):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {}
        for k, v in r.getheaders():
            hdrs.setdefault(k.lower(), []).append(v)
        c.close()
        for sc in hdrs.get("set-cookie", []):
            name, _, rest = sc.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return Response(r.status, hdrs, data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, fields, csrf=True, page=None, **kw):
        fields = dict(fields)
        if csrf is True:
            token = page.csrf() if page is not None else None
            assert token, "no CSRF token in the page"
            fields["_csrf"] = token
        elif isinstance(csrf, str):
            fields["_csrf"] = csrf
        body = urllib.parse.urlencode(fields)
        return self.request("POST", path, body=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"}, **kw)


class Figment(Proc):
    def __init__(self, workdir, llm_url=None, extra_env=None, prompts=None, threads=2, config=None):
        self.var = os.path.join(workdir, "var")
        env = dict(os.environ)
        for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FIGMENT_MODEL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                  "FIGMENT_ANTHROPIC_MODEL"):
            env.pop(k, None)
        if llm_url:
            env["OPENAI_BASE_URL"] = llm_url
            env["OPENAI_API_KEY"] = "sk-test"
            env["FIGMENT_MODEL"] = "fake-model"
        env.update(extra_env or {})
        self.argv = [os.path.join(BUILD, "figment"), "serve", "--listen", "127.0.0.1:0", "--threads", str(threads),
                     "--var", self.var, "--prompts", prompts or os.path.join(ROOT, "prompts"),
                     "--static", os.path.join(ROOT, "static")]
        if config is not None:  # a dict: written as figment.json
            path = os.path.join(workdir, "figment.json")
            with open(path, "w") as f:
                json.dump(config, f)
            self.argv += ["--config", path]
        self.env = env
        super().__init__(self.argv, env, "figment", workdir)

    def browser(self):
        return Browser(self.port)

    def restart(self):
        self.stop()
        Proc.__init__(self, self.argv, self.env, "figment", self.workdir)


def prompts_with(workdir, app, changes, leave_out=("import", "notes")):
    """A copy of prompts/ in workdir (without the apps in leave_out) whose app.json of
    `app` has the top-level keys in `changes` set; returns the copy's path."""
    prompts = os.path.join(workdir, "prompts")
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts, ignore=shutil.ignore_patterns(*leave_out))
    path = os.path.join(prompts, app, "app.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return prompts


def make_workdir():
    return tempfile.mkdtemp(prefix="figment-it-")


def remove_workdir(path):
    shutil.rmtree(path, ignore_errors=True)
