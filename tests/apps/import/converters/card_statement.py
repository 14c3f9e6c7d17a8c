# Converter for card_statement.csv (what the model writes for this upload): a
# credit-card statement. CRLF lines, dates like "12 Mar 2024", the currency only in the
# header ("Amount (EUR)"). Card statements show purchases as positive numbers and
# payments and refunds as negative ("PAYMENT RECEIVED - THANK YOU" is -500.00), so the
# sign is flipped: money out must be negative.
import csv
import re
from datetime import datetime
from decimal import Decimal

SRC = "card_statement.csv"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

with open(SRC, encoding="utf-8-sig", newline="") as f:
    reader = csv.reader(f)
    header = next(reader)
    data = [r for r in reader if any(c.strip() for c in r)]
m = re.fullmatch(r"Amount \(([A-Z]{3})\)", header[3])
if header[:3] != ["Date", "Reference", "Description"] or not m:
    raise SystemExit(f"unexpected header {header!r}")
currency = m.group(1)

rows = []
for r in data:
    d = re.fullmatch(r"(\d{2}) ([A-Z][a-z]{2}) (\d{4})", r[0])
    if not d or d.group(2) not in MONTHS:
        raise SystemExit(f"unexpected date {r[0]!r}")
    day = datetime(int(d.group(3)), MONTHS.index(d.group(2)) + 1, int(d.group(1))).date()
    if not re.fullmatch(r"-?\d+\.\d{2}", r[3]):
        raise SystemExit(f"unexpected amount {r[3]!r}")
    rows.append((day.isoformat(), -Decimal(r[3]), currency, r[2], ""))

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
