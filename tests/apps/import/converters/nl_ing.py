# Converter for nl_ing.csv (what the model writes for this upload): a Dutch bank
# export. ';' delimiter, every field quoted, dates YYYYMMDD, unsigned amounts with a
# decimal comma ("1.095,00") and the direction in the "Af Bij" column (Af = money out,
# Bij = money in), the currency in the header ("Bedrag (EUR)"). The merchant is
# "Naam / Omschrijving".
import csv
import re
from decimal import Decimal

SRC = "nl_ing.csv"

with open(SRC, encoding="utf-8-sig", newline="") as f:
    reader = csv.DictReader(f, delimiter=";")
    amount_col = next(c for c in reader.fieldnames if c.startswith("Bedrag"))
    data = list(reader)
m = re.fullmatch(r"Bedrag \(([A-Z]{3})\)", amount_col)
if not m:
    raise SystemExit(f"no currency in {amount_col!r}")
currency = m.group(1)

rows = []
for r in data:
    d = r["Datum"]
    if not re.fullmatch(r"\d{8}", d):
        raise SystemExit(f"unexpected date {d!r}")
    raw = r[amount_col]
    if not re.fullmatch(r"\d{1,3}(\.\d{3})*,\d{2}", raw):
        raise SystemExit(f"unexpected amount {raw!r}")
    amount = Decimal(raw.replace(".", "").replace(",", "."))
    if r["Af Bij"] == "Af":
        amount = -amount
    elif r["Af Bij"] != "Bij":
        raise SystemExit(f"unexpected direction {r['Af Bij']!r}")
    rows.append((f"{d[:4]}-{d[4:6]}-{d[6:]}", amount, currency, r["Naam / Omschrijving"], ""))

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
