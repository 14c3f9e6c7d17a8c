-- seed.sql — the CSV-import app: bank and card statements of any layout, converted to
-- one standard table of transactions.
--
-- figment runs this once to build var/apps/import.db. Everything here is fictional.
--
-- Conventions (prompt.md and the verifier in app.json rely on them):
--   * One upload that was imported is one row of imports; its transactions point to it.
--     The app writes ids never by hand: a new import's transactions use
--     (SELECT MAX(id) FROM imports), so the winning attempt's statements replay
--     correctly on the real database.
--   * transactions.date is an ISO-8601 calendar date, 'YYYY-MM-DD'.
--   * transactions.amount is a signed decimal number (negative = money out), never text:
--     '1.234,56' or '£12.00' stored as text fails the verifier.
--   * transactions.currency is an ISO 4217 code in capitals ('EUR'); category is the
--     statement's own category, or NULL when the file has none.
--   * imports.totals is a JSON object of currency -> the decimal sum as a string,
--     '{"EUR":"-150.38","USD":"15.29"}'; row_count and totals must equal what the
--     transactions of the import add up to (the verifier checks it).
--   * imports.created_at is local time, 'YYYY-MM-DDTHH:MM:SS'.
--   * Formats are checked by the verifier, not by CHECK constraints: it judges an
--     attempt's whole result (including row_count and totals), and a failed attempt is
--     simply discarded for another one.
--   * No comments inside CREATE statements: their text is copied into the prompt.

CREATE TABLE imports (
  id INTEGER PRIMARY KEY,
  filename TEXT NOT NULL,
  row_count INTEGER NOT NULL,
  totals TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE transactions (
  id INTEGER PRIMARY KEY,
  import_id INTEGER NOT NULL REFERENCES imports(id),
  date TEXT NOT NULL,
  amount NUMERIC NOT NULL,
  currency TEXT NOT NULL,
  merchant TEXT NOT NULL,
  category TEXT
);

CREATE INDEX transactions_import ON transactions(import_id, date);

-- One earlier import, so that the home page has a past import to list.
INSERT INTO imports (id, filename, row_count, totals, created_at) VALUES
(1, 'february.csv', 6, '{"EUR":"1862.76"}', '2026-11-02T09:15:00');

INSERT INTO transactions (import_id, date, amount, currency, merchant, category) VALUES
(1, '2024-02-01', 2450.00, 'EUR', 'Northwind Traders GmbH', 'Income'),
(1, '2024-02-02', -42.80, 'EUR', 'Lidl', 'Groceries'),
(1, '2024-02-05', -480.00, 'EUR', 'Hausverwaltung Becker', 'Rent'),
(1, '2024-02-09', -23.45, 'EUR', 'Deutsche Bahn', 'Transport'),
(1, '2024-02-14', -18.90, 'EUR', 'Kino am Raschplatz', 'Entertainment'),
(1, '2024-02-27', -22.09, 'EUR', 'Vodafone GmbH', 'Phone');
