#!/usr/bin/python3
"""Runs every figment test and ends with one line "N passed, N failed".

Stages, each on the normal build and (with --asan-build) again on the ASan/UBSan build:
  unit         every cmocka binary in <build>/tests (counts cmocka's own test cases)
  integration  pytest tests/integration (real figment + fakellm on loopback ports)
A stage that cannot run counts as a failure, never as a silent pass.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit(build, env):
    passed = failed = 0
    binaries = sorted(glob.glob(os.path.join(ROOT, build, "tests", "test_*")))
    binaries = [b for b in binaries if os.access(b, os.X_OK) and not b.endswith(".p")]
    if not binaries:
        print(f"unit[{build}]: no test binaries found", flush=True)
        return 0, 1
    for b in binaries:
        p = subprocess.run([b], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        out = p.stdout + p.stderr
        ok = re.findall(r"\[  PASSED  \] (\d+) test", out)
        bad = re.findall(r"\[  FAILED  \] (\d+) test", out)
        n_ok = sum(int(x) for x in ok)
        n_bad = sum(int(x) for x in bad)
        if p.returncode != 0 and n_bad == 0:
            n_bad = 1  # crashed or exited badly without cmocka's summary
        passed += n_ok
        failed += n_bad
        status = "ok" if n_bad == 0 else "FAIL"
        print(f"unit[{build}] {os.path.basename(b)}: {n_ok} passed, {n_bad} failed {status}", flush=True)
        if n_bad:
            print(out[-6000:], flush=True)
    return passed, failed


def run_pytest(build, env, label, paths):
    xml = os.path.join(ROOT, build, f"pytest-{label}.xml")
    env = dict(env, FIGMENT_BUILD=os.path.join(ROOT, build))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"] + paths
    p = subprocess.run(cmd, cwd=ROOT, env=env)
    try:
        root = ET.parse(xml).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        total = sum(int(s.get("tests", 0)) for s in suites)
        bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        skipped = sum(int(s.get("skipped", 0)) for s in suites)
    except (OSError, ET.ParseError):
        return 0, 1, 0
    if p.returncode not in (0, 1) and bad == 0:
        bad = 1
    return total - bad - skipped, bad, skipped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--asan-build")
    args = ap.parse_args()

    builds = [(args.build, dict(os.environ))]
    if args.asan_build:
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=86"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(ROOT, "tests", "lsan.supp")
        env["FIGMENT_SANITIZED"] = "1"
        builds.append((args.asan_build, env))

    passed = failed = skipped = 0
    for build, env in builds:
        p, f = run_unit(build, env)
        passed += p
        failed += f
        p, f, s = run_pytest(build, env, "integration", ["tests/integration"])
        print(f"integration[{build}]: {p} passed, {f} failed, {s} skipped", flush=True)
        passed += p
        failed += f
        skipped += s

    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
