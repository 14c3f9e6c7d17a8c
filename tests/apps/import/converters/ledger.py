# Converter for ledger.csv (what the model writes for this upload): a bookkeeping
# export already close to the standard schema. ISO dates, payee and memo fields with
# commas and doubled quotes, category and currency columns, then a blank line and a
# "Total" footer row without a date, which is skipped: it sums mixed currencies and is
# not a transaction.
import csv
import re
from decimal import Decimal

SRC = "ledger.csv"

with open(SRC, encoding="utf-8-sig", newline="") as f:
    data = [r for r in csv.DictReader(f) if (r["date"] or "").strip()]

rows = []
for r in data:
    if not re.fullmatch(r"-?\d+\.\d{2}", r["amount"]):
        raise SystemExit(f"unexpected amount {r['amount']!r}")
    rows.append((r["date"], Decimal(r["amount"]), r["currency"], r["payee"], r["category"]))

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
