"""The CSV-import app (prompts/import): sample statements, their converters, the
verifier, and the upload flow end to end.

Two kinds of tests live here:

* Offline checks (no figment, no fakellm): each sample statement in tests/apps/import/
  is converted by the Python a model would write for it (converters/<name>.py), run
  with /usr/bin/python3 the way the run_code sandbox runs it (isolated mode, the upload
  in the current directory, results in out/), and compared with expected/<name>.csv and
  expected/<name>.json. The SQL the converter prints is loaded into a database built
  from seed.sql and judged by the verifier from app.json; corrupted states must fail it.
* End to end (real figment + fakellm): a multipart upload to POST /import/upload, which
  figment runs as app.json's concurrent attempts; the stand-in (fakellm_script.py)
  calls run_code with the converter, then sql with the two INSERTs, reads the totals
  back and answers the page. The tests check the page, the app database after the
  request, and what the tools returned to the model.
"""
import csv
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import OrderedDict
from decimal import Decimal

import pytest

import harness

ROOT = harness.ROOT
APP_DIR = os.path.join(ROOT, "prompts", "import")
SAMPLES_DIR = os.path.join(ROOT, "tests", "apps", "import")
sys.path.insert(0, SAMPLES_DIR)
import fakellm_script as fs  # noqa: E402

PYTHON = "/usr/bin/python3"  # the interpreter run_code uses
NAMES = sorted(fs.SAMPLES)


def app_json():
    with open(os.path.join(APP_DIR, "app.json"), encoding="utf-8") as f:
        return json.load(f)


def verify_sql():
    return app_json()["actions"][0]["verify"]["sql"]


def prompt_tail():
    with open(os.path.join(APP_DIR, "prompt.md"), encoding="utf-8") as f:
        return re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)


def run_converter(code, files, timeout=30):
    """Runs code like the sandbox: a fresh directory holding the uploads. Returns
    (exit status, stdout, stderr, {out/ name: bytes})."""
    d = tempfile.mkdtemp(prefix="figment-import-")
    try:
        for name, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        p = subprocess.run([PYTHON, "-I", "-c", code], cwd=d, capture_output=True, timeout=timeout,
                           env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        out = {}
        if os.path.isdir(os.path.join(d, "out")):
            for n in os.listdir(os.path.join(d, "out")):
                with open(os.path.join(d, "out", n), "rb") as f:
                    out[n] = f.read()
        return p.returncode, p.stdout.decode(), p.stderr.decode(), out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def sample_bytes(name):
    with open(fs.sample_path(name), "rb") as f:
        return f.read()


def convert(name):
    rc, out, err, files = run_converter(fs.converter_code(name), {f"{name}.csv": sample_bytes(name)})
    assert rc == 0, f"{name}: converter failed:\n{err}"
    return out, files


def printed_statements(stdout):
    """(summary dict, statement 1, statement 2) from a converter's stdout."""
    summary_line, rest = stdout.split("\n", 1)
    m = re.fullmatch(r"-- statement 1\n(.*)\n-- statement 2\n(.*)\n", rest, re.S)
    assert m, f"unexpected converter output:\n{stdout[:2000]}"
    return json.loads(summary_line), m.group(1), m.group(2)


def seeded_db():
    db = sqlite3.connect(":memory:")
    with open(os.path.join(APP_DIR, "seed.sql"), encoding="utf-8") as f:
        db.executescript(f.read())
    return db


def verdict(db):
    row = db.execute(verify_sql()).fetchone()
    return bool(row and row[0])


def stored_rows(db, import_id):
    return [tuple(r) for r in db.execute(
        "SELECT date, printf('%.2f', amount), currency, merchant, COALESCE(category, '') FROM transactions "
        "WHERE import_id = ? ORDER BY id", (import_id,))]


def expected_groups(name):
    """currency -> (count, total, first date, last date), from the expected rows."""
    g = OrderedDict()
    for d, a, c, m, k in sorted(fs.expected_rows(name), key=lambda r: r[2]):
        n, t, lo, hi = g.get(c, (0, Decimal("0"), d, d))
        g[c] = (n + 1, t + Decimal(a), min(lo, d), max(hi, d))
    return g


# ---------------------------------------------------------------------------
# Offline: samples, converters, the prompt's tail, the verifier (pass today)
# ---------------------------------------------------------------------------

def test_samples_cover_the_layouts():
    assert len(NAMES) >= 6
    texts = {n: sample_bytes(n) for n in NAMES}
    for n, data in texts.items():
        rows = fs.expected_rows(n)
        assert 8 <= len(rows) <= 30, n
        assert fs.expected_summary(n)["rows"] == len(rows), n
    def delimiter(data):  # the delimiter of the file's widest line, by csv's own sniffer
        text = data.decode("utf-8-sig")
        widest = max(text.splitlines(), key=len)
        return csv.Sniffer().sniff(widest, delimiters=",;\t").delimiter
    assert {delimiter(d) for d in texts.values()} == {",", ";", "\t"}
    assert any(d.startswith(b"\xef\xbb\xbf") for d in texts.values())   # UTF-8 BOM
    assert any(b'""' in d for d in texts.values())                      # doubled quotes
    assert any(b"\r\n" in d for d in texts.values())                    # CRLF
    joined = b"\n".join(texts.values()).decode("utf-8-sig")
    assert re.search(r"\b3[01]/03/2024\b", joined)                       # DD/MM/YYYY
    assert re.search(r"\b03/3[01]/2024\b", joined)                       # MM/DD/YYYY
    assert re.search(r"\b2024-03-\d\d\b", joined)                        # YYYY-MM-DD
    assert re.search(r"\b\d\d Mar 2024\b", joined)                       # 12 Mar 2024
    assert re.search(r"\b1\.\d{3},\d\d\b", joined)                       # 1.234,56
    assert "Paid out" in joined and "Paid in" in joined                 # debit/credit columns
    assert any(len(fs.expected_summary(n)["totals"]) > 1 for n in NAMES)  # several currencies


@pytest.mark.parametrize("name", NAMES)
def test_converter_output_matches_expected(name):
    stdout, files = convert(name)
    assert set(files) == {"transactions.csv"}
    with open(os.path.join(SAMPLES_DIR, "expected", f"{name}.csv"), "rb") as f:
        assert files["transactions.csv"] == f.read()
    summary, first, second = printed_statements(stdout)
    assert summary == fs.expected_summary(name)


@pytest.mark.parametrize("name", NAMES)
def test_converter_ends_with_the_prompt_tail(name):
    # the converters are what a model writes: its own parsing, then the prompt's tail verbatim
    assert fs.converter_code(name).endswith(prompt_tail())


@pytest.mark.parametrize("name", NAMES)
def test_stand_in_statements_are_what_the_converter_prints(name):
    _, first, second = printed_statements(convert(name)[0])
    assert (first, second) == fs.import_statements(name)


@pytest.mark.parametrize("name", NAMES)
def test_printed_sql_imports_into_the_seed_schema_and_passes_the_verifier(name):
    _, first, second = printed_statements(convert(name)[0])
    db = seeded_db()
    assert not verdict(db)  # the seeded import is old: no new import, no pass
    assert db.execute(first).rowcount == 1
    assert db.execute(second).rowcount == len(fs.expected_rows(name))
    assert verdict(db)
    (new_id, filename, count, totals), = db.execute(
        "SELECT id, filename, row_count, totals FROM imports WHERE id > 1").fetchall()
    assert (filename, count, json.loads(totals)) == (f"{name}.csv", len(fs.expected_rows(name)),
                                                     fs.expected_summary(name)["totals"])
    assert stored_rows(db, new_id) == fs.expected_rows(name)
    assert len(stored_rows(db, 1)) == 6  # the seeded import is untouched
    # what the stand-in's read-back query shows on the page
    got = db.execute(fs.TOTALS_SQL).fetchall()
    want = [(c, n, f"{t:.2f}", lo, hi) for c, (n, t, lo, hi) in expected_groups(name).items()]
    assert got == want


def test_seed_is_consistent_with_its_own_rules():
    db = seeded_db()
    (count, totals), = db.execute("SELECT row_count, totals FROM imports WHERE id = 1").fetchall()
    assert count == db.execute("SELECT COUNT(*) FROM transactions WHERE import_id = 1").fetchone()[0]
    s = db.execute("SELECT printf('%.2f', SUM(amount)) FROM transactions WHERE import_id = 1").fetchone()[0]
    assert json.loads(totals) == {"EUR": s}
    # it fails the verifier only because it is old
    db.execute("UPDATE imports SET created_at = strftime('%Y-%m-%dT%H:%M:%S', 'now', 'localtime')")
    assert verdict(db)


def good_db(name="wallet_export"):
    db = seeded_db()
    first, second = fs.import_statements(name)
    db.execute(first)
    db.execute(second)
    assert verdict(db)
    return db


CORRUPTIONS = {
    "impossible date": "UPDATE transactions SET date = '2024-02-30' WHERE id = (SELECT MAX(id) FROM transactions)",
    "US date": "UPDATE transactions SET date = '03/14/2024' WHERE id = (SELECT MAX(id) FROM transactions)",
    "date with time": "UPDATE transactions SET date = '2024-03-14 10:00:00' WHERE id = (SELECT MAX(id) FROM transactions)",
    "lowercase currency": "UPDATE transactions SET currency = 'eur' WHERE id = (SELECT MAX(id) FROM transactions)",
    "currency symbol": "UPDATE transactions SET currency = '€' WHERE id = (SELECT MAX(id) FROM transactions)",
    "amount as text": "UPDATE transactions SET amount = '1.234,56' WHERE id = (SELECT MAX(id) FROM transactions)",
    "empty merchant": "UPDATE transactions SET merchant = ' ' WHERE id = (SELECT MAX(id) FROM transactions)",
    "a row missing": "DELETE FROM transactions WHERE id = (SELECT MAX(id) FROM transactions)",
    "row_count off": "UPDATE imports SET row_count = row_count + 1 WHERE id = (SELECT MAX(id) FROM imports)",
    "total off by a cent": "UPDATE transactions SET amount = amount + 0.01 WHERE id = (SELECT MAX(id) FROM transactions)",
    "a currency missing from totals":
        "UPDATE imports SET totals = json_remove(totals, '$.CHF') WHERE id = (SELECT MAX(id) FROM imports)",
    "an extra currency in totals":
        "UPDATE imports SET totals = json_set(totals, '$.JPY', '0') WHERE id = (SELECT MAX(id) FROM imports)",
    "totals not JSON": "UPDATE imports SET totals = 'EUR -143.71' WHERE id = (SELECT MAX(id) FROM imports)",
    "stale import": "UPDATE imports SET created_at = '2026-01-01T00:00:00' WHERE id = (SELECT MAX(id) FROM imports)",
    "rows under another import":
        "UPDATE transactions SET import_id = 1 WHERE import_id = (SELECT MAX(id) FROM imports)",
    "an empty import after the good one":
        "INSERT INTO imports (filename, row_count, totals, created_at) VALUES ('x.csv', 0, '{}', "
        "strftime('%Y-%m-%dT%H:%M:%S', 'now', 'localtime'))",
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_verifier_rejects(case):
    db = good_db()
    db.execute(CORRUPTIONS[case])
    assert not verdict(db), case


def test_verifier_rejects_an_attempt_that_wrote_nothing():
    db = seeded_db()
    assert not verdict(db)
    db.execute("DELETE FROM transactions")
    db.execute("DELETE FROM imports")
    assert not verdict(db)


def test_stand_in_bad_rows_fail_the_verifier():
    db = seeded_db()
    first, bad = fs.import_statements("uk_current", rows=fs.bad_rows("uk_current"))
    db.execute(first)
    db.execute(bad)
    assert not verdict(db)


def verify_py(files):
    with open(os.path.join(APP_DIR, "verify.py"), encoding="utf-8") as f:
        code = f.read()
    rc, out, err, _ = run_converter(code, files)
    return rc, err


@pytest.mark.parametrize("name", NAMES)
def test_verify_py_passes_converted_files(name):
    _, files = convert(name)
    rc, err = verify_py({f"{name}.csv": sample_bytes(name), "out/transactions.csv": files["transactions.csv"]})
    assert rc == 0, err


@pytest.mark.parametrize("bad,why", [
    (b"date,amount,currency,merchant,category\n2024-02-30,-1.00,EUR,A,\n", "date"),
    (b"date,amount,currency,merchant,category\n14/03/2024,-1.00,EUR,A,\n", "date"),
    (b"date,amount,currency,merchant,category\n2024-03-14,\"1.234,56\",EUR,A,\n", "amount"),
    (b"date,amount,currency,merchant,category\n2024-03-14,-1.5,EUR,A,\n", "amount"),
    (b"date,amount,currency,merchant,category\n2024-03-14,-1.50,eur,A,\n", "currency"),
    (b"date,amount,currency,merchant,category\n2024-03-14,-1.50,EUR, ,\n", "merchant"),
    (b"date,amount,currency,merchant,category\n", "rows"),
    (b"Date,Amount,Currency,Merchant,Category\n2024-03-14,-1.50,EUR,A,\n", "header"),
    (None, "No such file"),
])
def test_verify_py_rejects(bad, why):
    files = {"x.csv": b"a,b\n"}
    if bad is not None:
        files["out/transactions.csv"] = bad
    rc, err = verify_py(files)
    assert rc == 1 and why in err, err


def test_ambiguous_dates_are_refused_not_guessed():
    # uk_current with every day at most 12: DD/MM and MM/DD both fit, so the converter
    # must stop (the page then asks for the date order) instead of picking one
    text = sample_bytes("uk_current").decode("utf-8")
    text = re.sub(r'"(\d\d)/03/2024"', lambda m: f'"{int(m.group(1)) % 12 + 1:02d}/03/2024"', text)
    rc, out, err, files = run_converter(fs.converter_code("uk_current"), {"uk_current.csv": text.encode()})
    assert rc != 0 and "cannot tell DD/MM from MM/DD" in err
    assert files == {}


def test_prompt_tail_refuses_bad_rows():
    head = 'SRC = "x.csv"\nfrom decimal import Decimal\nrows = [%s]\n'
    for row, why in [("('2024-02-30', Decimal('1.00'), 'EUR', 'A', '')", "day is out of range"),
                     ("('30/01/2024', Decimal('1.00'), 'EUR', 'A', '')", "bad date"),
                     ("('2024-01-30', Decimal('1.005'), 'EUR', 'A', '')", "more than 2 decimals"),
                     ("('2024-01-30', Decimal('1.00'), 'Euro', 'A', '')", "bad date or currency"),
                     ("('2024-01-30', Decimal('1.00'), 'EUR', ' \\t', '')", "no merchant"),
                     ("", "0 transactions")]:
        rc, out, err, files = run_converter(head % row + prompt_tail(), {})
        assert rc != 0 and why in err, (row, err)
        assert "statement" not in out


def test_prompt_tail_quotes_hostile_text():
    # a merchant that tries to end the string and run a second statement stays a value
    evil = "x'); DELETE FROM transactions; --"
    code = ('SRC = "evil\'s.csv"\nfrom decimal import Decimal\n'
            f'rows = [("2024-03-01", Decimal("-1.00"), "EUR", {evil!r}, "a\\nb")]\n') + prompt_tail()
    rc, out, err, files = run_converter(code, {})
    assert rc == 0, err
    _, first, second = printed_statements(out)
    db = seeded_db()
    db.execute(first)
    db.execute(second)
    assert verdict(db)
    assert db.execute("SELECT merchant, category FROM transactions ORDER BY id DESC LIMIT 1").fetchone() == (evil, "a b")
    assert db.execute("SELECT filename FROM imports ORDER BY id DESC LIMIT 1").fetchone() == ("evil's.csv",)
    assert db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 7


def test_app_json_declares_the_import_action():
    app = app_json()
    assert app["tools"]["sql"] == {"access": "write"}
    assert "run_code" in app["tools"]
    (action,) = app["actions"]
    assert action["method"] == "POST" and action["attempts"] == 3
    assert re.fullmatch(action["path"].strip("^$"), "/import/upload")
    assert not re.search(action["path"], "/import/upload/x")
    assert set(action["verify"]) == {"sql"}
    biggest = max(len(sample_bytes(n)) for n in NAMES)
    assert app["uploads"]["max_bytes"] >= 100 * biggest
    assert app["limits"]["max_body_bytes"] > app["uploads"]["max_bytes"]  # room for the multipart framing
    assert app["limits"]["max_tool_rounds"] >= 6  # inspect, convert, 2 inserts, read back (+ a retry)


# ---------------------------------------------------------------------------
# End to end: real figment + fakellm (need run_code, uploads and actions in figment)
# ---------------------------------------------------------------------------

@pytest.fixture
def figment_import(workdir, fakellm):
    """figment serving only the import app (a copy of prompts/: its own seed database)."""
    prompts = os.path.join(workdir, "prompts")
    os.makedirs(prompts)
    shutil.copy(os.path.join(ROOT, "prompts", "system.md"), prompts)
    shutil.copytree(APP_DIR, os.path.join(prompts, "import"))
    fig = harness.Figment(workdir, llm_url=fakellm.base_url, prompts=prompts)
    yield fig
    fig.stop()


def multipart(fields, files):
    boundary = "figment-test-" + secrets.token_hex(8)
    body = io.BytesIO()
    for k, v in fields:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, filename, ctype, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{filename}"\r\n'
                   f"Content-Type: {ctype}\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def open_upload_page(fig, fakellm, browser):
    fakellm.set_script(fs.home_script())
    page = browser.get("/import/")
    assert page.status == 200, page.text
    assert 'enctype="multipart/form-data"' in page.text and page.csrf(), page.text[:2000]
    return page


def upload(browser, page, name, filename=None):
    ctype, currency = fs.SAMPLES[name]
    body, content_type = multipart(
        [("_csrf", page.csrf()), ("currency", currency), ("date_order", "detect")],
        [("statement", filename or f"{name}.csv", ctype, sample_bytes(name))])
    return browser.request("POST", "/import/upload", body=body, headers={"Content-Type": content_type}, timeout=120)


def app_db(fig):
    db = sqlite3.connect(f"file:{os.path.join(fig.var, 'apps', 'import.db')}?mode=ro", uri=True)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def user_text(req):
    return [m for m in req["messages"] if m["role"] == "user"][-1]["content"]


def tool_messages(req):
    return [m["content"] for m in req["messages"] if m["role"] == "tool"]


def upload_requests(fakellm):
    return [q for q in fakellm.requests() if fs.UPLOAD_MATCH in user_text(q)]


def assert_imported(fig, name, r, import_id=2):
    assert r.status == 200, r.text[:3000]
    assert "Stand-in lost" not in r.text, r.text[:3000]
    assert f"<title>Imported {name}.csv" in r.text
    # the totals on the page were read back from the attempt's database
    for cur, (n, total, first, last) in expected_groups(name).items():
        assert f"{cur} | {n} | {total:.2f} | {first} | {last}" in r.text, (cur, r.text[:3000])
    # and the winner's writes are in the real database
    db = app_db(fig)
    try:
        (filename, count, totals), = db.execute(
            "SELECT filename, row_count, totals FROM imports WHERE id = ?", (import_id,)).fetchall()
        assert (filename, count) == (f"{name}.csv", len(fs.expected_rows(name)))
        assert json.loads(totals) == fs.expected_summary(name)["totals"]
        assert stored_rows(db, import_id) == fs.expected_rows(name)
        assert db.execute("SELECT MAX(id) FROM imports").fetchone()[0] == import_id  # one import, not one per attempt
        assert len(stored_rows(db, 1)) == 6
    finally:
        db.close()


@pytest.mark.parametrize("name", NAMES)
def test_upload_is_converted_and_imported(figment_import, fakellm, name):
    b = figment_import.browser()
    page = open_upload_page(figment_import, fakellm, b)
    fakellm.set_script(fs.upload_script(name))
    fakellm.clear()
    r = upload(b, page, name)
    assert_imported(figment_import, name, r)

    reqs = upload_requests(fakellm)
    firsts = [q for q in reqs if not tool_messages(q)]
    assert len(firsts) == app_json()["actions"][0]["attempts"]  # the attempts run concurrently
    # the model was told about the upload: stored name, size and first lines
    text = user_text(firsts[0])
    m = re.search(r"\nuploads: (\[.*\])\n", text)
    assert m, text
    (entry,) = [u for u in json.loads(m.group(1)) if u["name"] == f"{name}.csv"]
    assert entry["size"] == len(sample_bytes(name))
    assert entry["first_lines"].split("\n")[0] == sample_bytes(name).decode("utf-8-sig").splitlines()[0]
    assert f'"filename":"{name}.csv"' in text  # the file part of the form
    # run_code ran the converter on the uploaded file and returned out/transactions.csv
    results = [t for q in reqs for t in tool_messages(q)[:1]]
    summary = json.dumps(fs.expected_summary(name))
    assert any(summary in t for t in results), results[:1]
    # (run_code.c's format: "files written to out/ (saved with the session's files):\n- name (N bytes)")
    assert any(re.search(r"^exit status: 0\b", t) and
               re.search(r"\nfiles written to out/[^\n]*:\n(.*\n)*?- transactions\.csv \(\d+ bytes\)", t)
               for t in results), results[:1]
    # both INSERTs went through the sql tool
    later = [tool_messages(q) for q in reqs if len(tool_messages(q)) >= 3]
    assert later and all(re.search(r"\(1 rows? changed\)", t[1]) for t in later)
    assert all(f"({len(fs.expected_rows(name))} rows changed)" in t[2] for t in later)


def test_imports_accumulate_and_are_listed(figment_import, fakellm):
    b = figment_import.browser()
    page = open_upload_page(figment_import, fakellm, b)
    fakellm.set_script(fs.upload_script("uk_current"))
    assert_imported(figment_import, "uk_current", upload(b, page, "uk_current"), import_id=2)
    page = open_upload_page(figment_import, fakellm, b)
    fakellm.set_script(fs.upload_script("wallet_export"))
    fakellm.clear()
    assert_imported(figment_import, "wallet_export", upload(b, page, "wallet_export"), import_id=3)
    # the session keeps its files: the second interaction lists both uploads
    text = user_text(upload_requests(fakellm)[0])
    names = [u["name"] for u in json.loads(re.search(r"\nuploads: (\[.*\])\n", text).group(1))]
    assert "uk_current.csv" in names and "wallet_export.csv" in names
    # the upload page lists the imports from the real database, newest first
    r = open_upload_page(figment_import, fakellm, b)
    listed = re.findall(r"\b(wallet_export\.csv|uk_current\.csv|february\.csv)\b", r.text)
    assert listed[:3] == ["wallet_export.csv", "uk_current.csv", "february.csv"], r.text[:3000]


def test_a_bad_attempt_is_rejected_by_the_verifier(figment_import, fakellm):
    # The first attempt to reach the INSERT writes an impossible date; the good INSERTs
    # of the other attempts are delayed so that the bad attempt finishes first. The
    # verifier must discard it and a good attempt must win.
    b = figment_import.browser()
    page = open_upload_page(figment_import, fakellm, b)
    fakellm.set_script(fs.upload_script("uk_current", bad="once", good_insert_delay_ms=1500 * harness.SLOW))
    fakellm.clear()
    r = upload(b, page, "uk_current")
    assert_imported(figment_import, "uk_current", r)
    assert fs.BAD_DATE not in r.text  # the page is the winner's
    reqs = upload_requests(fakellm)
    # the bad attempt ran to its page (so it was verified, and rejected)
    bad_finished = [q for q in reqs if len(tool_messages(q)) == 5 and fs.BAD_DATE in tool_messages(q)[-1]]
    assert len(bad_finished) == 1
    db = app_db(figment_import)
    try:
        assert db.execute("SELECT COUNT(*) FROM transactions WHERE date = ?", (fs.BAD_DATE,)).fetchone()[0] == 0
    finally:
        db.close()


def test_when_no_attempt_passes_nothing_is_written(figment_import, fakellm):
    b = figment_import.browser()
    page = open_upload_page(figment_import, fakellm, b)
    fakellm.set_script(fs.upload_script("nl_ing", bad="always"))
    fakellm.clear()
    r = upload(b, page, "nl_ing")
    # every attempt wrote a bad row and claimed success: none of that may reach the user or the database
    assert "<title>Imported nl_ing.csv" not in r.text
    bad_finished = [q for q in upload_requests(fakellm) if len(tool_messages(q)) == 5]
    assert len(bad_finished) == 3
    db = app_db(figment_import)
    try:
        assert db.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 6
    finally:
        db.close()
