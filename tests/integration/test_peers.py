"""figment against an OpenAI-compatible mock written by others (@dwmkerr/mock-llm from npm),
to prove the client speaks the protocol as other implementations do, not only as fakellm does."""
import http.client
import os
import socket
import subprocess
import time

import harness
from harness import ROOT, SLOW

MOCK = os.path.join(ROOT, "tests", "npm", "node_modules", "@dwmkerr", "mock-llm", "dist", "main.js")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_one_interaction_against_mock_llm(workdir):
    assert os.path.exists(MOCK), "run `make test` (it installs tests/npm) or `npm ci` in tests/npm"
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    mock = subprocess.Popen(["node", MOCK, "--config", os.path.join(ROOT, "tests", "integration", "mock-llm.yaml")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                c.getresponse().read()
                break
            except OSError:
                assert time.time() < deadline, "mock-llm did not start"
                time.sleep(0.1)
        fig = harness.Figment(workdir, llm_url=f"http://127.0.0.1:{port}/v1")
        try:
            r = fig.browser().get("/notes/search?q=milk")
            assert r.status == 200, r.text
            # mock-llm echoes the last user message: the interaction text, rendered as a page
            assert "<h1>Interaction</h1>" in r.text
            assert "path: /notes/search" in r.text and "milk" in r.text
        finally:
            fig.stop()
    finally:
        mock.terminate()
        mock.wait(timeout=10)
