"""fakellm_script.py — the stand-in model's scripts for the CSV-import app.

For a sample statement (tests/apps/import/<name>.csv) the stand-in plays the model the
way prompts/import/prompt.md asks: on POST /import/upload it calls run_code with the
converter a model would write for that file (converters/<name>.py), then sql with the
two statements the converter prints (the imports row, then ONE multi-row INSERT of the
transactions), then reads the totals and rows back in one round, and answers with the
result page. The statements are rebuilt here from expected/<name>.csv, independently of
the converter, in the exact format of the prompt's standard tail; the unit tests check
that the converter prints the same text.

Each step is keyed on the number of tool results so far, and each waits for the
previous tool's result to look right (last_tool_result_match): when a part of figment
misbehaves, the stand-in falls through to a "Stand-in lost" page that shows the last
tool result, and the test's assertion message shows what went wrong.

Attempts: POST /import/upload runs as several concurrent attempts (app.json "actions"),
each sending its own requests; fakellm cannot tell them apart, but a rule with "times"
is used by the first N matching requests whichever attempt sends them. bad="once" makes
the first attempt to reach the INSERT write a row with an impossible date (the
verifier must reject that attempt) and delays the good INSERT so that the bad attempt
finishes first; bad="always" makes every attempt bad.
"""
import csv
import html
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (content type sent with the upload, form.currency chosen by the user)
SAMPLES = {
    "uk_current": ("text/csv", "GBP"),
    "us_checking": ("text/csv", "USD"),
    "de_sparkasse": ("text/csv", "EUR"),
    "wallet_export": ("text/csv", "EUR"),
    "card_statement": ("text/csv", "EUR"),
    "nl_ing": ("text/csv", "EUR"),
    "ledger": ("text/csv", "USD"),
}

UPLOAD_MATCH = "method: POST\npath: /import/upload\n"
HOME_MATCH = "method: GET\npath: /import/\n"
BAD_DATE = "2024-02-30"  # no such day: the verifier's date(date, '+0 days') check rejects it

TOTALS_SQL = ("SELECT currency, COUNT(*) AS n, printf('%.2f', SUM(amount)) AS total, MIN(date) AS first, "
              "MAX(date) AS last FROM transactions WHERE import_id = (SELECT MAX(id) FROM imports) "
              "GROUP BY currency ORDER BY currency")
ROWS_SQL = ("SELECT date, merchant, category, printf('%.2f', amount) AS amount, currency FROM transactions "
            "WHERE import_id = (SELECT MAX(id) FROM imports) ORDER BY date, id LIMIT 200")
IMPORTS_SQL = "SELECT id, filename, row_count, totals, created_at FROM imports ORDER BY id DESC LIMIT 50"


def sample_path(name):
    return os.path.join(HERE, f"{name}.csv")


def converter_code(name):
    with open(os.path.join(HERE, "converters", f"{name}.py"), encoding="utf-8") as f:
        return f.read()


def expected_rows(name):
    """[(date, amount text, currency, merchant, category text)] in file order."""
    with open(os.path.join(HERE, "expected", f"{name}.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["date", "amount", "currency", "merchant", "category"], rows[0]
    return [tuple(r) for r in rows[1:]]


def expected_summary(name):
    """{"rows": N, "totals": {"EUR": "-150.38", ...}}"""
    with open(os.path.join(HERE, "expected", f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def sql_text(s):
    return "NULL" if s is None or s == "" else "'" + s.replace("'", "''") + "'"


def import_statements(name, filename=None, rows=None):
    """The two statements of the prompt's standard tail for this sample."""
    filename = filename or f"{name}.csv"
    rows = expected_rows(name) if rows is None else rows
    summary = expected_summary(name)
    totals = json.dumps(summary["totals"], separators=(",", ":"))
    first = (f"INSERT INTO imports (filename, row_count, totals, created_at) VALUES ({sql_text(filename)}, "
             f"{len(rows)}, {sql_text(totals)}, strftime('%Y-%m-%dT%H:%M:%S', 'now', 'localtime'))")
    second = "INSERT INTO transactions (import_id, date, amount, currency, merchant, category) VALUES\n" + ",\n".join(
        f"((SELECT MAX(id) FROM imports), {sql_text(d)}, {a}, {sql_text(c)}, {sql_text(m)}, {sql_text(k)})"
        for d, a, c, m, k in rows)
    return first, second


def bad_rows(name):
    """The expected rows with the first date replaced by an impossible one."""
    rows = expected_rows(name)
    return [(BAD_DATE,) + rows[0][1:]] + rows[1:]


def ere_escape(s):
    """Escapes s for a POSIX extended regex (fakellm's match fields)."""
    return "".join("\\" + c if c in ".[]{}()*+?^$|\\" else c for c in s)


def result_page(name, filename=None):
    """The page the stand-in answers: the rows it inserted, and the totals as read back
    from the attempt's database ({{last_tool_result}} of the totals query)."""
    filename = filename or f"{name}.csv"
    rows = expected_rows(name)
    lines = [f"# Imported {html.escape(filename, quote=False)}", "",
             f'<p class="card">Imported {len(rows)} transactions.</p>', "",
             '<nav class="nav"><a href="/import/">Upload</a> <a href="/import/imports">Past imports</a></nav>', "",
             "## Totals", "", "<pre>{{last_tool_result}}</pre>", "",
             "## Transactions", "", "| Date | Merchant | Category | Amount |", "|---|---|---|---:|"]
    for d, a, c, m, k in rows:
        cell = html.escape(m, quote=False).replace("|", "\\|")
        lines.append(f"| {d} | {cell} | {html.escape(k, quote=False)} | {a} {c} |")
    return "\n".join(lines) + "\n"


def lost_rule(match):
    return {"name": "lost", "match": match,
            "reply": {"content": "# Stand-in lost\n\n<pre>{{last_tool_result}}</pre>\n"}}


def upload_script(name, bad="none", filename=None, good_insert_delay_ms=0):
    """The script for one upload of sample `name`. bad: "none", "once" or "always"."""
    assert bad in ("none", "once", "always")
    filename = filename or f"{name}.csv"
    first, second = import_statements(name, filename)
    _, bad_second = import_statements(name, filename, bad_rows(name))
    rules = [
        {"name": "convert", "match": UPLOAD_MATCH, "tool_results": 0,
         "reply": {"tool_calls": [{"name": "run_code", "arguments": {"code": converter_code(name)}}]}},
        {"name": "insert-import", "match": UPLOAD_MATCH, "tool_results": 1,
         "last_tool_result_match": "transactions\\.csv",
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": first}}]}},
    ]
    if bad != "none":
        rule = {"name": "insert-bad-rows", "match": UPLOAD_MATCH, "tool_results": 2,
                "last_tool_result_match": "\\(1 rows? changed\\)",
                "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": bad_second}}]}}
        if bad == "once":
            rule["times"] = 1
        rules.append(rule)
    good = {"name": "insert-rows", "match": UPLOAD_MATCH, "tool_results": 2,
            "last_tool_result_match": "\\(1 rows? changed\\)",
            "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": second}}]}}
    if good_insert_delay_ms:
        good["ttft_ms"] = good_insert_delay_ms
    rules += [
        good,
        {"name": "read-back", "match": UPLOAD_MATCH, "tool_results": 3,
         "last_tool_result_match": "\\([0-9]+ rows? changed\\)",
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": ROWS_SQL}},
                                  {"name": "sql", "arguments": {"query": TOTALS_SQL}}]}},
        {"name": "result-page", "match": UPLOAD_MATCH, "tool_results": 5,
         "last_tool_result_match": "^currency \\| n \\| total \\| first \\| last",
         "reply": {"content": result_page(name, filename)}},
        lost_rule(UPLOAD_MATCH),
    ] + home_rules()
    return {"description": f"CSV import of {name}.csv (bad attempts: {bad})", "rules": rules}


def home_rules():
    """GET /import/: the upload form and the imports, read from the real database."""
    form = ('<form method="post" action="/import/upload" enctype="multipart/form-data">'
            '<p><label>Statement <input type="file" name="statement" accept=".csv,.tsv,.txt,text/csv"></label></p>'
            '<p><label>Currency, if the file does not say <select name="currency"><option value="EUR">EUR</option>'
            '<option value="USD">USD</option><option value="GBP">GBP</option></select></label></p>'
            '<p><label>Date order, if the file does not show it <select name="date_order">'
            '<option value="detect">Detect</option><option value="dmy">Day first (31/12/2024)</option>'
            '<option value="mdy">Month first (12/31/2024)</option></select></label></p>'
            '<div class="actions"><button type="submit">Import</button></div></form>')
    return [
        {"name": "home-query", "match": HOME_MATCH, "tool_results": 0,
         "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": IMPORTS_SQL}}]}},
        {"name": "home-page", "match": HOME_MATCH, "tool_results": 1,
         "reply": {"content": "# Import\n\nUpload a CSV export of a bank account or card statement (at most 1 MB).\n\n"
                              + form + "\n\n## Recent imports\n\n<pre>{{last_tool_result}}</pre>\n"}},
    ]


def home_script():
    return {"description": "CSV import: the upload page", "rules": home_rules()}
