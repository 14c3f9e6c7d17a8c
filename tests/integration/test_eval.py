"""`figment eval` and `figment replay` end to end: the mail app's golden set
(tests/golden/mail.jsonl) run by the real binary against fakellm playing
tests/golden/mail.fakellm.json, a failing assertion, a malformed golden file,
comparing two models, and replaying a trace that eval produced."""
import json
import os
import subprocess

import pytest

import harness
from harness import BUILD, ROOT, SANITIZER_MARKS, SLOW

GOLDEN = os.path.join(ROOT, "tests", "golden", "mail.jsonl")
SCRIPT = os.path.join(ROOT, "tests", "golden", "mail.fakellm.json")
N_CASES = sum(1 for line in open(GOLDEN) if line.strip())


@pytest.fixture
def golden_llm(workdir):
    with open(SCRIPT) as f:
        llm = harness.FakeLLM(workdir, json.load(f))
    yield llm
    llm.stop()


def figment(args, llm=None, timeout=120):
    env = dict(os.environ)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FIGMENT_MODEL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
              "FIGMENT_ANTHROPIC_MODEL"):
        env.pop(k, None)
    env["OPENAI_API_KEY"] = "sk-test"
    if llm is not None:
        env["OPENAI_BASE_URL"] = llm.base_url
        env["FIGMENT_MODEL"] = "fake-model"
    p = subprocess.run([os.path.join(BUILD, "figment")] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout * SLOW)
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, p.stderr[-8000:]
    return p


def serve_flags(workdir, var="var"):
    return ["--var", os.path.join(workdir, var), "--prompts", os.path.join(ROOT, "prompts"),
            "--static", os.path.join(ROOT, "static"), "--threads", "2"]


def write_lines(path, cases):
    with open(path, "w") as f:
        for c in cases:
            f.write((json.dumps(c) if isinstance(c, dict) else c) + "\n")


def golden_cases():
    with open(GOLDEN) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_golden_set_passes_against_fakellm(workdir, golden_llm):
    p = figment(["eval", GOLDEN] + serve_flags(workdir), golden_llm)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    for c in golden_cases():
        assert any(line.startswith(f"PASS {c['name']} (") for line in lines), p.stdout
    assert f"eval: {N_CASES} cases, {N_CASES} passed (100.0%), cost $" in p.stdout
    assert "latency p50 " in p.stdout and " ms p95 " in p.stdout
    # the pages really came from the scripted model, through the sql tool
    texts = [m["content"] for r in golden_llm.requests() for m in r["messages"] if m["role"] == "tool"]
    assert any(t.startswith("subject | sender") and "Security notice" in t for t in texts)
    assert any(t.startswith("(") and "rows changed)" in t for t in texts)  # opening 42 marked it read


def test_failed_assertion_fails_the_run_and_names_the_case(workdir, golden_llm):
    cases = golden_cases()
    cases[0]["assert"].append({"contains": "a text no page has"})
    path = os.path.join(workdir, "broken.jsonl")
    write_lines(path, cases)
    p = figment(["eval", path, "--threshold", "1.0"] + serve_flags(workdir), golden_llm)
    assert p.returncode == 1, p.stdout + p.stderr
    name = cases[0]["name"]
    fail = [line for line in p.stdout.splitlines() if line.startswith(f"FAIL {name} (")]
    assert len(fail) == 1, p.stdout
    assert 'contains "a text no page has": not in the page' in fail[0]
    assert f"{N_CASES - 1} passed" in p.stdout
    # the default threshold (0.9) accepts 10 of 11
    p = figment(["eval", path] + serve_flags(workdir), golden_llm)
    assert p.returncode == (0 if (N_CASES - 1) / N_CASES >= 0.9 else 1), p.stdout


def test_malformed_golden_file_exits_2_with_the_line(workdir):
    ok = golden_cases()[0]
    path = os.path.join(workdir, "bad.jsonl")
    bad = dict(ok, colour="blue")
    write_lines(path, [ok, "", bad])
    p = figment(["eval", path] + serve_flags(workdir))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "bad.jsonl:3: unknown key 'colour'" in p.stderr
    write_lines(path, [ok, '{"name": "x", "app": "mail",'])
    p = figment(["eval", path] + serve_flags(workdir))
    assert p.returncode == 2
    assert "bad.jsonl:2: invalid JSON" in p.stderr
    write_lines(path, [dict(ok, **{"assert": [{"selector": "a["}]})])
    p = figment(["eval", path] + serve_flags(workdir))
    assert p.returncode == 2
    assert "bad.jsonl:1: assert[0].selector 'a['" in p.stderr
    # and bad flags
    p = figment(["eval", GOLDEN, "--threshold", "2"] + serve_flags(workdir))
    assert p.returncode == 2 and "--threshold" in p.stderr
    p = figment(["eval", GOLDEN, "--compare-models", "openai/a,openai/b"] + serve_flags(workdir))
    assert p.returncode == 2 and "compare needs --config" in p.stderr


def test_compare_models_side_by_side(workdir, golden_llm):
    config = {"providers": {"openai": {"kind": "openai", "base_url": golden_llm.base_url,
                                       "api_key_env": "OPENAI_API_KEY",
                                       "models": {"m1": {"input": 0, "output": 0}, "m2": {"input": 0, "output": 0}}}},
              "default_models": ["openai/m1"]}
    conf = os.path.join(workdir, "figment.json")
    with open(conf, "w") as f:
        json.dump(config, f)
    p = figment(["eval", GOLDEN, "--config", conf, "--compare-models", "openai/m1,openai/m2", "--json"]
                + serve_flags(workdir))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "A: openai/m1" in p.stdout and "B: openai/m2" in p.stdout
    assert f"eval [A openai/m1]: {N_CASES} cases, {N_CASES} passed (100.0%)" in p.stdout
    assert f"eval [B openai/m2]: {N_CASES} cases, {N_CASES} passed (100.0%)" in p.stdout
    result = json.loads(p.stdout.splitlines()[-1])
    assert result["ok"] is True and [r["label"] for r in result["runs"]] == ["openai/m1", "openai/m2"]
    assert {c["model"] for c in result["runs"][1]["cases"]} == {"openai/m2"}
    models = {r["model"] for r in golden_llm.requests()}
    assert models == {"m1", "m2"}
    # the generated configs are gone
    assert not [f for f in os.listdir(os.path.join(workdir, "var")) if f.startswith("eval-figment-")]


def test_replay_of_a_trace_from_eval(workdir, golden_llm):
    p = figment(["eval", GOLDEN, "--json"] + serve_flags(workdir), golden_llm)
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads(p.stdout.splitlines()[-1])
    assert result["ok"] is True and result["passed"] == N_CASES
    case = next(c for c in result["cases"] if c["name"] == "injection-42-not-obeyed")
    assert case["have_trace"] and case["model"] == "openai/fake-model"
    tid = case["trace_id"]

    p = figment(["replay", tid] + serve_flags(workdir), golden_llm)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"--- old {tid} /mail/message/42")
    assert lines[1].startswith("+++ new ")
    assert "(the visible text is the same)" in p.stdout
    assert any(line.startswith("old: model openai/fake-model, latency ") for line in lines)
    assert any(line.startswith("new: model openai/fake-model, latency ") for line in lines)

    # the model changes its mind: the diff shows it, line by line
    with open(SCRIPT) as f:
        script = json.load(f)
    for r in script["rules"]:
        if r["name"] == "message-42-page":
            r["reply"]["content"] = r["reply"]["content"].replace("looks like phishing", "is safe")
    golden_llm.set_script(script)
    p = figment(["replay", tid] + serve_flags(workdir), golden_llm)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "\n@@ -" in p.stdout
    assert "\n-⚠ This message looks like phishing. Do not follow its links or instructions.\n" in p.stdout
    assert "\n+⚠ This message is safe. Do not follow its links or instructions.\n" in p.stdout

    p = figment(["replay", "0" * 32] + serve_flags(workdir), golden_llm)
    assert p.returncode == 1 and "no such trace" in p.stderr
    p = figment(["replay", "not-a-trace"] + serve_flags(workdir), golden_llm)
    assert p.returncode == 2
