#!/usr/bin/env python3
"""run_bench.py — `make bench`: figment against fakellm on loopback, one run, all figures.

First, build/tests/microbench (tests/bench/microbench.c): the CPU of each step of one
interaction, measured in-process; its figures go under "microbench" in the JSON.

Steps (each a loadgen run, tests/bench/loadgen.c):
  0. ceiling   closed loop straight at fakellm: what loadgen + fakellm manage together,
               so a figment figure far below it is figment's, not the load generator's.
  1. throughput closed loop GET /mail/ at concurrency 32 and 64 (short probes), then the
               better one for the full duration -> interactions per second.
  2. latency   open loop at --rate (1,000/s): first straight at fakellm with the exact
               request body figment sends (captured from fakellm's /_fakellm/requests),
               then GET /mail/ through figment. Added latency = figment - direct, at p50
               and p99. It includes the browser-side HTTP hop, which is inherent. The
               same again at --low-rate (100/s), figment's path without queueing.
  3. memory    fakellm switched to a 20 s time-to-first-token; figment's VmRSS idle, then
               with --hold 2,000 interactions in flight -> (peak - idle) / 2,000.

The model answers every request at once (ttft 0) with a short page in a few SSE chunks.
Steps 1 and 2 reuse one session cookie (every interaction is the same session); step 3
sends no cookie (2,000 fresh sessions). The machine is shared: for every step the CPU
used by processes other than figment, fakellm and loadgen is measured from /proc and
reported, because it skews the figures.

Output: a readable summary, then one line of JSON with every figure. Exit status 0 when
every step ran (a benchmark reports, it does not judge), 1 when a step could not run.
Loopback only; bounded in time (about a minute).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")

PAGE = ("# Inbox\n\n"
        "You have **3 unread** messages. The newest are first.\n\n"
        "| | From | Subject | Date |\n|---|---|---|---|\n"
        "| • | Jamie Lee | [Re: Lunch on Friday](/mail/message/12) | Fri 11:02 |\n"
        "| • | Sam Ortiz | [Quarterly report draft](/mail/message/11) | Thu 16:40 |\n"
        "| • | Priya Shah | [Your package has shipped](/mail/message/10) | Thu 09:15 |\n"
        "|   | Dana Kim | [Weekend hike?](/mail/message/9) | Wed 18:22 |\n"
        "|   | Alex Morgan | [Notes from the design review](/mail/message/8) | Tue 14:05 |\n\n"
        "<form method=\"post\" action=\"/mail/search\">\n"
        "<input type=\"text\" name=\"q\" placeholder=\"Search mail\">\n"
        "<button type=\"submit\">Search</button>\n</form>\n\n"
        "[Compose](/mail/compose) · [Sent](/mail/sent) · [Drafts](/mail/drafts)\n")


def script(ttft_ms):
    # chunk_chars: the page arrives in a few SSE chunks, as from a real model
    return {"description": "make bench: every request gets the same short page",
            "defaults": {"ttft_ms": ttft_ms, "chunk_chars": 256, "chunk_interval_ms": 0},
            "require_api_key": "sk-bench",
            "rules": [{"name": "page", "reply": {"content": PAGE}}]}


class StepFailed(Exception):
    pass


# ------------------------------------------------------------------ machine and /proc

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "loadavg_1m_before": float(open("/proc/loadavg").read().split()[0])}


def busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def proc_cpu_jiffies(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tcp_established_to(port):
    """Open loopback TCP connections whose server side is port (from /proc/net/tcp)."""
    n = 0
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[1].endswith(want) and parts[3] == "01":
                    n += 1
    except OSError:
        pass
    return n


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class CpuMeter:
    """CPU of our servers and of everything else on the machine over one step."""

    def __init__(self, procs):
        self.procs = procs  # name -> pid
        self.busy0, self.total0 = busy_jiffies()
        self.cpu0 = {n: proc_cpu_jiffies(p) for n, p in procs.items()}

    def stop(self, loadgen_cpu_s, requests):
        busy1, total1 = busy_jiffies()
        used = {n: proc_cpu_jiffies(p) - self.cpu0[n] for n, p in self.procs.items()}
        used["loadgen"] = loadgen_cpu_s * CLK_TCK
        total = max(total1 - self.total0, 1)
        others = max(busy1 - self.busy0 - sum(used.values()), 0)
        ncpu = os.cpu_count() or 1
        # shares of the whole machine (100% = every core busy); CPU time per request is
        # the figure least disturbed by whatever else runs on the machine
        r = {"machine_busy_pct": round(100.0 * (busy1 - self.busy0) / total, 1),
             "others_pct": round(100.0 * others / total, 1),
             "others_cores": round(ncpu * others / total, 2)}
        for n, j in used.items():
            r[n + "_cpu_us_per_req"] = round(j / CLK_TCK * 1e6 / requests, 1) if requests else None
        return r


# ------------------------------------------------------------------ processes

class Server:
    def __init__(self, what, argv, env, workdir):
        self.what = what
        self.port_file = os.path.join(workdir, what + ".port")
        self.stderr_path = os.path.join(workdir, what + ".stderr")
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(argv + ["--port-file", self.port_file], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, cwd=ROOT)
        self.pid = self.proc.pid
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise StepFailed(f"{what} exited at start ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                with open(self.port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.stop()
        raise StepFailed(f"{what} did not start within 15 s")

    def log(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def http(method, port, path, body=None, headers=None, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Loadgen:
    """One loadgen run; .result is its JSON line, .cpu_s its CPU time."""

    def __init__(self, binary, url, args, headers=(), body_file=None, wait=True, timeout=120):
        self.argv = [binary, "--url", url] + [str(a) for a in args]
        for h in headers:
            self.argv += ["--header", h]
        if body_file:
            self.argv += ["--method", "POST", "--body-file", body_file]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.holding = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.result = None
        self.cpu_s = 0.0
        if wait:
            self.wait(timeout)

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line == "holding":
                self.holding.set()
            elif line:
                self.lines.append(line)

    def wait(self, timeout=120):
        deadline = time.time() + timeout
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                self.proc.kill()
                pid, status, ru = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = ru.ru_utime + ru.ru_stime
        self.reader.join(5)
        err = self.proc.stderr.read()
        if self.proc.returncode != 0 or not self.lines:
            raise StepFailed(f"loadgen failed ({self.proc.returncode}): {' '.join(self.argv)}\n{err[-2000:]}")
        self.result = json.loads(self.lines[-1])
        return self.result


# ------------------------------------------------------------------ the benchmark

def step(name, binary, url, args, pids, **kw):
    meter = CpuMeter(pids)
    lg = Loadgen(binary, url, args, **kw)
    r = dict(lg.result)
    r["cpu"] = meter.stop(lg.cpu_s, r["requests"])
    r["loadgen_cpu_s"] = round(lg.cpu_s, 2)
    bad = r["errors"] + r["bad_status"] + r["unfinished"] + r["unsent"]
    print(f"  {name:<28} {r['requests']:>7} req  {r['rps']:>9.1f}/s  p50 {r['p50_us']:>9.1f} us  "
          f"p99 {r['p99_us']:>9.1f} us  failed {bad}", flush=True)
    c = r["cpu"]
    print(f"  {'':<28} CPU per request: figment {c['figment_cpu_us_per_req']} us, fakellm "
          f"{c['fakellm_cpu_us_per_req']} us, loadgen {c['loadgen_cpu_us_per_req']} us; "
          f"other processes used {c['others_cores']} cores", flush=True)
    return r


def cache_and_shell_steps(a, work, figment_bin, loadgen_bin, fake, env, pids):
    """Step 4 on a second figment whose mail app caches pages (cache.ttl_s)."""
    prompts = os.path.join(work, "prompts-cached")
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts, ignore=shutil.ignore_patterns("import"))
    path = os.path.join(prompts, "mail", "app.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["cache"] = {"ttl_s": 3600}
    with open(path, "w") as f:
        json.dump(cfg, f)
    res = {}
    fig = Server("figment-cached", [figment_bin, "serve", "--listen", "127.0.0.1:0", "--threads", str(a.threads),
                                    "--quiet", "--var", os.path.join(work, "var-cached"), "--prompts", prompts,
                                    "--static", os.path.join(ROOT, "static")], env, work)
    try:
        http("PUT", fake.port, "/_fakellm/script", json.dumps(script(0)).encode(), {"Content-Type": "application/json"})
        st, hdrs, _ = http("GET", fig.port, "/mail/")
        m = re.match(r"(figment_sid=[^;]+)", hdrs.get("Set-Cookie") or "")
        if st != 200 or not m:
            raise StepFailed(f"cached figment: GET /mail/ answered {st}")
        st, hdrs, _ = http("GET", fig.port, "/mail/", headers={"Cookie": m.group(1)})
        if hdrs.get("X-Figment-Cache") != "hit" and hdrs.get("x-figment-cache") != "hit":
            raise StepFailed("cached figment: the second GET /mail/ was not a cache hit")
        cookie = "Cookie: " + m.group(1)
        url = f"http://127.0.0.1:{fig.port}/mail/"
        cpids = dict(pids, figment=fig.pid)
        d = a.duration
        probes = {}
        for c in (32, 64):
            probes[c] = step(f"4 cache hits: c={c}", loadgen_bin, url, ["--concurrency", c, "--duration", min(d, 3)],
                             cpids, headers=[cookie])
        best = max(probes, key=lambda c: probes[c]["rps"])
        res["cache_hits"] = step(f"4 cache hits: c={best}", loadgen_bin, url, ["--concurrency", best, "--duration", d],
                                 cpids, headers=[cookie])
        res["cache_hits"]["concurrency"] = best
        # the target figure: a steady closed loop of 8 clients, hits/s and their p99 from one run
        res["cache_hits_c8"] = step("4 cache hits: c=8", loadgen_bin, url, ["--concurrency", 8, "--duration", d],
                                    cpids, headers=[cookie])
        res["cache_hits_rate"] = step("4 cache hits: 20000/s", loadgen_bin, url,
                                      ["--rate", 20000, "--duration", min(d, 5), "--connections", 256], cpids,
                                      headers=[cookie])
        # the floor: the same load on a static file of the same server (no session, no
        # cache, no model), to tell figment's hit path from the machine and the load generator
        res["static_floor_rate"] = step("4 floor: static file 20000/s", loadgen_bin,
                                        f"http://127.0.0.1:{fig.port}/static/favicon.svg",
                                        ["--rate", 20000, "--duration", min(d, 5), "--connections", 256], cpids)
        http("DELETE", fake.port, "/_fakellm/requests")

        # time to the first byte of the streamed shell while the model takes 2 s to its first token
        http("PUT", fake.port, "/_fakellm/script", json.dumps(script(2000)).encode(),
             {"Content-Type": "application/json"})
        import socket
        times = []
        # 200 browser requests at 100/s, each measured from its send to the first byte of
        # the answer; the model would take 2 s, so every one is in flight at once by the end
        socks = []
        t_next = time.perf_counter()
        for i in range(200):
            now = time.perf_counter()
            if now < t_next:
                time.sleep(t_next - now)
            t_next += 0.01
            s = socket.create_connection(("127.0.0.1", fig.port))
            t0 = time.perf_counter()
            s.sendall(f"GET /mail/shell/{i} HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n{cookie}\r\n\r\n".encode())
            first = s.recv(1)
            times.append((time.perf_counter() - t0) * 1e6)
            if not first:
                raise StepFailed("cached figment closed a streamed request without a byte")
            socks.append(s)
        for s in socks:
            s.close()
        time.sleep(0.5)
        times.sort()
        res["shell_first_byte_us"] = {"n": len(times), "p50_us": round(times[len(times) // 2], 1),
                                      "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
                                      "max_us": round(times[-1], 1)}
        sf = res["shell_first_byte_us"]
        print(f"  4 shell first byte (100/s, model TTFT 2 s): n={sf['n']}  p50 {sf['p50_us']:.0f} us  "
              f"p99 {sf['p99_us']:.0f} us  max {sf['max_us']:.0f} us", flush=True)
        http("PUT", fake.port, "/_fakellm/script", json.dumps(script(0)).encode(), {"Content-Type": "application/json"})
    except StepFailed as e:
        res["cache_failed"] = str(e)
    finally:
        fig.stop()
    return res


def microbench(build, failed):
    """CPU per step of one interaction, measured in-process (tests/bench/microbench.c):
    prints its table, returns its JSON figures (None when it could not run)."""
    binary = os.path.join(build, "tests", "microbench")
    print("\nCPU per step of one interaction (in-process)", flush=True)
    try:
        r = subprocess.run([binary, "--prompts", os.path.join(ROOT, "prompts")], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        failed.append(f"microbench: {e}")
        return None
    lines = r.stdout.strip().splitlines()
    for line in lines[:-1]:
        print("  " + line)
    try:
        figures = json.loads(lines[-1]) if lines else None
    except ValueError:
        figures = None
    if r.returncode != 0 or figures is None:
        failed.append(f"microbench exited with {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")
    print(flush=True)
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build dir (default: build)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured step (default 10)")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop rate for added latency (default 1000)")
    ap.add_argument("--low-rate", type=float, default=100.0,
                    help="also measure added latency at this light rate (default 100; 0: skip)")
    ap.add_argument("--hold", type=int, default=2000, help="in-flight interactions for the RSS step (default 2000)")
    ap.add_argument("--threads", type=int, default=2, help="figment --threads (default 2)")
    ap.add_argument("--figment-env", action="append", default=[], metavar="K=V",
                    help="extra environment for figment (experiments, e.g. GLIBC_TUNABLES=...)")
    ap.add_argument("--json-out", help="also write the JSON figures to this file")
    a = ap.parse_args()

    build = a.build if os.path.isabs(a.build) else os.path.join(ROOT, a.build)
    figment_bin = os.path.join(build, "figment")
    fakellm_bin = os.path.join(build, "tests", "fakellm")
    loadgen_bin = os.path.join(build, "tests", "loadgen")
    for b in (figment_bin, fakellm_bin, loadgen_bin):
        if not os.access(b, os.X_OK):
            print(f"bench: missing {b} (build first: ninja -C {build})", file=sys.stderr)
            return 1

    t_start = time.time()
    mach = machine()
    print(f"figment bench — {mach['nproc']} cores, {mach['cpu']}, Linux {mach['kernel']}, "
          f"load average {mach['loadavg_1m_before']}", flush=True)
    out = {"machine": mach, "config": {"duration_s": a.duration, "rate": a.rate, "hold": a.hold,
                                       "figment_threads": a.threads, "fakellm_threads": 1,
                                       "figment_env": a.figment_env}}
    work = tempfile.mkdtemp(prefix="figment-bench-")
    fake = fig = None
    failed = []
    out["microbench"] = microbench(build, failed)
    try:
        spath = os.path.join(work, "script.json")
        with open(spath, "w") as f:
            json.dump(script(0), f)
        # one fakellm thread: it answers ~40k requests/s (step 0), and the two cores are
        # better left to figment
        fake = Server("fakellm", [fakellm_bin, "--listen", "127.0.0.1:0", "--script", spath, "--threads", "1"],
                      dict(os.environ), work)
        env = dict(os.environ)
        for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FIGMENT_MODEL"):
            env.pop(k, None)
        env.update({"OPENAI_BASE_URL": f"http://127.0.0.1:{fake.port}/v1", "OPENAI_API_KEY": "sk-bench",
                    "FIGMENT_MODEL": "fake-model"})
        for kv in a.figment_env:
            k, _, v = kv.partition("=")
            env[k] = v
        fig = Server("figment", [figment_bin, "serve", "--listen", "127.0.0.1:0", "--threads", str(a.threads),
                                 "--quiet", "--var", os.path.join(work, "var"),
                                 "--prompts", os.path.join(ROOT, "prompts"),
                                 "--static", os.path.join(ROOT, "static")], env, work)
        pids = {"figment": fig.pid, "fakellm": fake.pid}
        fig_url = f"http://127.0.0.1:{fig.port}/mail/"
        fake_url = f"http://127.0.0.1:{fake.port}/v1/chat/completions"

        # a session, and the exact request figment sends for it
        st, hdrs, body = http("GET", fig.port, "/mail/")
        m = re.match(r"(figment_sid=[^;]+)", hdrs.get("Set-Cookie") or "")
        if st != 200 or not m:
            raise StepFailed(f"GET /mail/ answered {st} without a session cookie: {body[:300]!r}")
        cookie = "Cookie: " + m.group(1)
        http("DELETE", fake.port, "/_fakellm/requests")
        st, _, body = http("GET", fig.port, "/mail/", headers={"Cookie": m.group(1)})
        if st != 200:
            raise StepFailed(f"GET /mail/ with the cookie answered {st}")
        _, _, reqs = http("GET", fake.port, "/_fakellm/requests")
        captured = json.loads(reqs)
        if len(captured) != 1:
            raise StepFailed(f"expected one model request per interaction, fakellm saw {len(captured)}")
        upstream = captured[0]
        upstream["stream"] = True
        body_file = os.path.join(work, "upstream.json")
        with open(body_file, "w") as f:
            json.dump(upstream, f, ensure_ascii=False, separators=(",", ":"))
        direct_headers = ["Content-Type: application/json", "Accept: text/event-stream",
                          "Authorization: Bearer sk-bench"]
        out["upstream_request_bytes"] = os.path.getsize(body_file)
        out["page_bytes"] = len(body)
        print(f"  request figment sends: {out['upstream_request_bytes']} bytes; page it serves: {len(body)} bytes",
              flush=True)

        def clear_fake():
            # fakellm keeps every request body for /_fakellm/requests: drop them between steps
            http("DELETE", fake.port, "/_fakellm/requests")

        # warm-up: connections, caches, the session row
        Loadgen(loadgen_bin, fig_url, ["--concurrency", 32, "--duration", 2], headers=[cookie])
        Loadgen(loadgen_bin, fake_url, ["--concurrency", 8, "--duration", 1], headers=direct_headers,
                body_file=body_file)
        clear_fake()

        d = a.duration
        print("steps:", flush=True)
        out["ceiling"] = step("0 ceiling: fakellm direct c=32", loadgen_bin, fake_url,
                              ["--concurrency", 32, "--duration", min(d, 3)], pids, headers=direct_headers,
                              body_file=body_file)
        clear_fake()
        probes = {}
        for c in (32, 64):
            probes[c] = step(f"1 probe: figment c={c}", loadgen_bin, fig_url,
                             ["--concurrency", c, "--duration", min(d, 3)], pids, headers=[cookie])
            clear_fake()
        best = max(probes, key=lambda c: probes[c]["ok"] / max(probes[c]["duration_s"], 1e-9))
        out["throughput"] = step(f"1 throughput: figment c={best}", loadgen_bin, fig_url,
                                 ["--concurrency", best, "--duration", d], pids, headers=[cookie])
        out["throughput"]["concurrency"] = best
        out["throughput"]["probes"] = {str(c): round(p["rps"], 1) for c, p in probes.items()}
        clear_fake()
        lat_args = ["--rate", a.rate, "--duration", d, "--connections", 256]
        out["latency_direct"] = step(f"2 latency: fakellm {a.rate:g}/s", loadgen_bin, fake_url, lat_args, pids,
                                     headers=direct_headers, body_file=body_file)
        clear_fake()
        out["latency_figment"] = step(f"2 latency: figment {a.rate:g}/s", loadgen_bin, fig_url, lat_args, pids,
                                      headers=[cookie])
        clear_fake()
        ld, lf = out["latency_direct"], out["latency_figment"]
        out["added_latency_us"] = {k: round(lf[k] - ld[k], 1) for k in ("p50_us", "p90_us", "p99_us", "p999_us")}
        if a.low_rate > 0:
            # the same at a light load: figment's own path without queueing behind other work
            low_args = ["--rate", a.low_rate, "--duration", min(d, 5), "--connections", 256]
            out["low_direct"] = step(f"2 low load: fakellm {a.low_rate:g}/s", loadgen_bin, fake_url, low_args, pids,
                                     headers=direct_headers, body_file=body_file)
            clear_fake()
            out["low_figment"] = step(f"2 low load: figment {a.low_rate:g}/s", loadgen_bin, fig_url, low_args, pids,
                                      headers=[cookie])
            clear_fake()
            out["added_latency_low_us"] = {k: round(out["low_figment"][k] - out["low_direct"][k], 1)
                                           for k in ("p50_us", "p90_us", "p99_us", "p999_us")}

        # 3. memory with N interactions in flight against a slow model
        st, _, _ = http("PUT", fake.port, "/_fakellm/script", json.dumps(script(20000)).encode(),
                        {"Content-Type": "application/json"})
        if st != 200:
            raise StepFailed(f"fakellm refused the slow script ({st})")
        time.sleep(0.5)  # let figment settle after the previous step
        idle_rss = proc_status_kb(fig.pid, "VmRSS")
        idle_fds = fd_count(fig.pid)
        t_hold = time.time()
        meter = CpuMeter(pids)
        lg = Loadgen(loadgen_bin, fig_url, ["--hold", a.hold, "--timeout", 60], wait=False)
        peak_rss, peak_fds, upstream_conns, samples = idle_rss, idle_fds, 0, []
        settled_at = None
        deadline = time.time() + 15  # well inside the model's 20 s stall
        while time.time() < deadline:
            rss, fds = proc_status_kb(fig.pid, "VmRSS"), fd_count(fig.pid)
            upstream_conns = max(upstream_conns, tcp_established_to(fake.port))
            samples.append((round(time.time() - t_hold, 2), rss, fds))
            peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
            # in flight: loadgen has sent every request and fakellm holds a connection for each
            # (figment's idle keep-alive connections to fakellm are reused, so >= is right)
            if settled_at is None and lg.holding.is_set() and upstream_conns >= a.hold:
                settled_at = time.time()
            if settled_at is not None and time.time() - settled_at >= 1.0:
                break  # a second of samples with everything in flight
            time.sleep(0.05)
        hold_ok = settled_at is not None
        lg.proc.send_signal(signal.SIGTERM)  # the clients go away: figment cancels the model calls
        held = lg.wait(30)
        time.sleep(1.0)
        after_rss = proc_status_kb(fig.pid, "VmRSS")
        out["memory"] = {
            "in_flight": a.hold, "all_in_flight": hold_ok,
            "upstream_connections_seen": upstream_conns,
            "idle_rss_kb": idle_rss, "peak_rss_kb": peak_rss, "after_clients_left_rss_kb": after_rss,
            "idle_fds": idle_fds, "peak_fds": peak_fds,
            "per_interaction_kb": round((peak_rss - idle_rss) / a.hold, 1),
            "completed_during_hold": held["requests"] - held["errors"],
            "cpu": meter.stop(lg.cpu_s, a.hold),
            "samples": len(samples),
        }
        mm = out["memory"]
        print(f"  3 memory: {a.hold} in flight       idle {idle_rss} KB  peak {peak_rss} KB  -> "
              f"{mm['per_interaction_kb']} KB per interaction  (fakellm held {upstream_conns} connections; "
              f"{after_rss} KB after the clients left)", flush=True)
        if not hold_ok:
            failed.append(f"memory: only {upstream_conns} of {a.hold} model calls were in flight within 15 s")
        fig_rc = fig.stop()
        fig = None

        # 4. pages that feel instant: cache hits, and the streamed shell's first byte
        out.update(cache_and_shell_steps(a, work, figment_bin, loadgen_bin, fake, env, pids))
        fake_rc = None
        fake_rc = fake.stop()
        out["exit"] = {"figment": fig_rc, "fakellm": fake_rc}
        fig = fake = None
    except StepFailed as e:
        failed.append(str(e))
    finally:
        for s in (fig, fake):
            if s is not None:
                s.stop()
        shutil.rmtree(work, ignore_errors=True)
    out["wall_s"] = round(time.time() - t_start, 1)

    if "throughput" in out and "added_latency_us" in out:
        tp, ad, ld, lf = out["throughput"], out["added_latency_us"], out["latency_direct"], out["latency_figment"]
        targets = {
            "added_p50_us<=100": ad["p50_us"] <= 100,
            "added_p99_us<=1000": ad["p99_us"] <= 1000,
            "rate_sustained": lf["errors"] + lf["bad_status"] + lf["unsent"] + lf["unfinished"] == 0 and
            lf["rps"] >= 0.97 * a.rate,
        }
        if "memory" in out:
            targets["rss_per_interaction_kb<=100"] = out["memory"]["per_interaction_kb"] <= 100
        if "cache_hits_c8" in out:
            c8 = out["cache_hits_c8"]
            targets["cache_hits_per_s>=20000_with_p99_us<2000"] = c8["rps"] >= 20000 and c8["p99_us"] < 2000
        if "shell_first_byte_us" in out:
            targets["shell_first_byte_p99_us<5000"] = out["shell_first_byte_us"]["p99_us"] < 5000
        out["targets_met"] = targets
        print("\nsummary")
        print(f"  interactions/s (closed loop, c={tp['concurrency']}, one session): {tp['rps']:.0f}  "
              f"[loadgen+fakellm alone: {out['ceiling']['rps']:.0f}/s]")
        print(f"  latency at {a.rate:g}/s   direct p50 {ld['p50_us']:.0f} us  p99 {ld['p99_us']:.0f} us | "
              f"figment p50 {lf['p50_us']:.0f} us  p99 {lf['p99_us']:.0f} us")
        print(f"  added by figment: p50 {ad['p50_us']:.0f} us (target <= 100), p99 {ad['p99_us']:.0f} us "
              f"(target <= 1000)")
        if "added_latency_low_us" in out:
            al = out["added_latency_low_us"]
            print(f"  added by figment at {a.low_rate:g}/s: p50 {al['p50_us']:.0f} us, p99 {al['p99_us']:.0f} us")
        c = tp["cpu"]
        print(f"  CPU per interaction: figment {c['figment_cpu_us_per_req']} us, fakellm {c['fakellm_cpu_us_per_req']} us,"
              f" loadgen {c['loadgen_cpu_us_per_req']} us; other processes used {c['others_cores']} of "
              f"{mach['nproc']} cores during the throughput step")
        if "memory" in out:
            print(f"  RSS per in-flight interaction: {out['memory']['per_interaction_kb']} KB (target <= 100)")
        if "cache_hits" in out:
            ch, cr, c8 = out["cache_hits"], out["cache_hits_rate"], out["cache_hits_c8"]
            print(f"  cache hits, 8 clients: {c8['rps']:.0f}/s with p50 {c8['p50_us']:.0f} us, p99 {c8['p99_us']:.0f} us "
                  f"(target: >= 20000/s with p99 < 2000 us)")
            print(f"  cache hits, most: {ch['rps']:.0f}/s (closed loop, c={ch['concurrency']}, p99 {ch['p99_us']:.0f} us); "
                  f"open loop at 20000/s: p50 {cr['p50_us']:.0f} us, p99 {cr['p99_us']:.0f} us, {cr['rps']:.0f}/s served")
            if "static_floor_rate" in out:
                fl = out["static_floor_rate"]
                print(f"  floor, a static file at 20000/s on the same server: p50 {fl['p50_us']:.0f} us, "
                      f"p99 {fl['p99_us']:.0f} us (the machine and load generator alone)")
        if "shell_first_byte_us" in out:
            sf = out["shell_first_byte_us"]
            print(f"  streamed shell, first byte: p50 {sf['p50_us']:.0f} us, p99 {sf['p99_us']:.0f} us (target < 5000)")
        if "cache_failed" in out:
            failed.append("cache step: " + out["cache_failed"])
        others = {k: v["cpu"]["others_cores"] for k, v in out.items()
                  if isinstance(v, dict) and isinstance(v.get("cpu"), dict)}
        out["others_cores_max"] = max(others.values())
        print(f"  other processes on the machine: up to {out['others_cores_max']} of {mach['nproc']} cores in a step"
              + ("" if out["others_cores_max"] < 0.2 else " — the figures are disturbed; run again on a quiet machine"))
        print("  targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    for f in failed:
        print(f"bench: step failed: {f}", file=sys.stderr)
    out["failed"] = failed
    line = json.dumps(out, separators=(",", ":"))
    print(line)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(line + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
