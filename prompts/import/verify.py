"""verify.py — the file-side verifier of an import attempt.

app.json's verifier is SQL: it judges the attempt's database (the new import's rows are
well-formed and add up to the recorded row_count and totals). This is the same judgement
on the attempt's files, for `"verify": {"python": <this file's text>}`: figment runs it
in the sandbox with the attempt's files (the uploads and the out/ files) in the current
directory, and exit status 0 means the attempt passes. It checks out/transactions.csv,
which the standard tail in prompt.md writes, independently of the tail's own checks (a
model may have altered the tail). Reasons for a failure go to stderr.

Standard library only; reads nothing but out/transactions.csv.
"""
import csv
import re
import sys
from datetime import date

HEADER = ["date", "amount", "currency", "merchant", "category"]
MAX_ROWS = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check(path="out/transactions.csv"):
    """Returns a list of problems (empty = the file is a good import)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return [f"{path}: {e}"]
    if not rows or rows[0] != HEADER:
        return [f"{path}: the header must be {','.join(HEADER)}"]
    data = rows[1:]
    problems = []
    if not 1 <= len(data) <= MAX_ROWS:
        problems.append(f"{len(data)} rows: an import takes 1 to {MAX_ROWS}")
    for n, r in enumerate(data, start=2):
        if len(r) != len(HEADER):
            problems.append(f"line {n}: {len(r)} fields")
            continue
        d, amount, currency, merchant, category = r
        try:
            ok = re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) is not None and date.fromisoformat(d).isoformat() == d
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"line {n}: date {d!r} is not YYYY-MM-DD")
        if not re.fullmatch(r"-?(0|[1-9][0-9]{0,14})\.[0-9]{2}", amount):
            problems.append(f"line {n}: amount {amount!r} is not a decimal with 2 places")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            problems.append(f"line {n}: currency {currency!r} is not an ISO 4217 code")
        if merchant.strip() == "" or CONTROL.search(merchant) or CONTROL.search(category):
            problems.append(f"line {n}: empty merchant or control characters")
        if len(problems) >= 20:
            break
    return problems


if __name__ == "__main__":
    found = check()
    for p in found:
        print(p, file=sys.stderr)
    sys.exit(1 if found else 0)
