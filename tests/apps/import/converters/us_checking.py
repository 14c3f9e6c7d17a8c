# Converter for us_checking.csv (what the model writes for this upload): a US
# checking-account export. A summary block and a blank line come before the header
# "Date,Description,Amount,Running Bal."; dates are MM/DD/YYYY (detected below); one
# signed Amount column with thousands separators; the first row is the opening balance,
# without an amount, and is skipped. The file names no currency: USD is what the user
# chose on the upload form (form.currency).
import csv
import re
from decimal import Decimal

SRC = "us_checking.csv"
CURRENCY = "USD"  # form.currency: the file does not say

with open(SRC, encoding="utf-8-sig", newline="") as f:
    lines = list(csv.reader(f))
header_at = next(i for i, r in enumerate(lines) if r[:3] == ["Date", "Description", "Amount"])
data = [r for r in lines[header_at + 1:] if any(c.strip() for c in r) and r[2].strip() != ""]

parts = []
for r in data:
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", r[0])
    if not m:
        raise SystemExit(f"unexpected date {r[0]!r}")
    parts.append(tuple(int(x) for x in m.groups()))
day_first = any(a > 12 for a, b, y in parts)
month_first = any(b > 12 for a, b, y in parts)
if day_first == month_first:
    raise SystemExit("cannot tell DD/MM from MM/DD in this file")

rows = []
for r, (a, b, y) in zip(data, parts):
    day, month = (a, b) if day_first else (b, a)
    if not re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d{2}", r[2]):
        raise SystemExit(f"unexpected amount {r[2]!r}")
    rows.append((f"{y:04d}-{month:02d}-{day:02d}", Decimal(r[2].replace(",", "")), CURRENCY, r[1], ""))

# ---- standard tail (from the app's prompt): check, write out/, print summary and SQL ----
import csv, json, os, re
from datetime import date
from decimal import Decimal


def sql_text(s):
    return "NULL" if s is None or s == "" else "'" + s.replace("'", "''") + "'"


clean, totals = [], {}
for d, amount, currency, merchant, category in rows:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise SystemExit(f"bad date or currency: {d!r} {currency!r}")
    date.fromisoformat(d)  # raises on an impossible date such as 2024-02-30
    amount = Decimal(amount) + 0  # also turns -0.00 into 0.00
    if amount != amount.quantize(Decimal("0.01")):
        raise SystemExit(f"more than 2 decimals: {amount}")
    merchant = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", merchant).split())
    category = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", category or "").split())
    if not merchant:
        raise SystemExit(f"no merchant on {d}")
    clean.append((d, amount, currency, merchant, category))
    totals[currency] = totals.get(currency, Decimal("0")) + amount
if not 1 <= len(clean) <= 200:
    raise SystemExit(f"{len(clean)} transactions: an import takes 1 to 200")
os.makedirs("out", exist_ok=True)
with open("out/transactions.csv", "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["date", "amount", "currency", "merchant", "category"])
    for d, amount, currency, merchant, category in clean:
        w.writerow([d, f"{amount:.2f}", currency, merchant, category])
summary = {"rows": len(clean), "totals": {c: f"{t:.2f}" for c, t in sorted(totals.items())}}
print(json.dumps(summary))
print("-- statement 1")
print(f"INSERT INTO imports (filename, row_count, totals, created_at) VALUES ({sql_text(SRC)}, {len(clean)}, "
      f"{sql_text(json.dumps(summary['totals'], separators=(',', ':')))}, "
      "strftime('%Y-%m-%dT%H:%M:%S', 'now', 'localtime'))")
print("-- statement 2")
print("INSERT INTO transactions (import_id, date, amount, currency, merchant, category) VALUES\n" + ",\n".join(
    f"((SELECT MAX(id) FROM imports), {sql_text(d)}, {a:.2f}, {sql_text(c)}, {sql_text(m)}, {sql_text(k)})"
    for d, a, c, m, k in clean))
