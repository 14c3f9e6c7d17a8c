#!/usr/bin/env bash
# check_seeds.sh — sanity checks for the demo apps under prompts/.
#
# Loads every prompts/<app>/seed.sql into a fresh temporary SQLite database with the
# sqlite3 CLI (stopping at the first SQL error), then checks what prompt.md and the
# tests rely on: row counts, folders, threads, the two prompt-injection messages at
# their documented ids, foreign keys, timestamp format, fictional domains only. It
# also validates each app.json against the keys app.h defines, using SQLite's JSON
# functions so that sqlite3 is the only dependency.
#
# Usage: tests/apps/check_seeds.sh [prompts_dir]   (exit status 0 = all checks passed)
# Not wired into CI; run it by hand after editing a seed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prompts="${1:-$root/prompts}"
command -v sqlite3 >/dev/null || { echo "check_seeds: sqlite3 CLI not found" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
checks=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# q DB SQL — one value (or rows) from a query; -bail makes any SQL error fatal.
q() { sqlite3 -batch -bail -noheader "$1" "$2"; }

# expect LABEL ACTUAL OP EXPECTED — OP is one of -eq -ge -le or = (string).
expect() {
    checks=$((checks + 1))
    local label="$1" actual="$2" op="$3" want="$4"
    if [ "$op" = "=" ]; then
        [ "$actual" = "$want" ] || fail "$label: got '$actual', expected '$want'"
    else
        [ "$actual" "$op" "$want" ] 2>/dev/null || fail "$label: got '$actual', expected $op $want"
    fi
}

# load APP — builds $tmp/APP.db from the seed the way figment does (one script).
# Sets $db; returns 1 (after counting the failure) when the seed does not load.
load() {
    local app="$1"
    db="$tmp/$app.db"
    checks=$((checks + 1))
    if ! sqlite3 -batch -bail "$db" < "$prompts/$app/seed.sql" > "$tmp/$app.log" 2>&1; then
        fail "$app: seed.sql does not load: $(cat "$tmp/$app.log")"
        return 1
    fi
}

# check_app_json APP — valid JSON, required keys, only the keys app.h knows.
check_app_json() {
    local app="$1" f="$prompts/$1/app.json" db="$tmp/json.db"
    [ -s "$f" ] || { fail "$app: app.json missing"; return; }
    [ -s "$prompts/$app/prompt.md" ] || fail "$app: prompt.md missing or empty"
    local valid
    valid="$(q "$db" "SELECT json_valid(CAST(readfile('$f') AS TEXT))")"
    expect "$app: app.json is valid JSON" "$valid" = 1
    [ "$valid" = 1 ] || return
    local unknown
    unknown="$(q "$db" "
        SELECT group_concat(replace(fullkey, '\"', ''), ' ') FROM json_tree(CAST(readfile('$f') AS TEXT))
        WHERE fullkey <> '\$' AND replace(fullkey, '\"', '') NOT IN (
          '\$.title', '\$.description', '\$.model', '\$.tools', '\$.tools.sql', '\$.tools.sql.access',
          '\$.tools.set_state', '\$.limits', '\$.limits.max_tool_rounds', '\$.limits.deadline_ms',
          '\$.limits.max_state_bytes', '\$.limits.max_body_bytes', '\$.limits.sql_max_rows',
          '\$.limits.sql_timeout_ms', '\$.limits.max_output_tokens', '\$.limits.history_items',
          '\$.tools.sql.ddl', '\$.confirm_ttl_s')
        -- sections whose inner keys figment's own validator (server/app.c) checks in detail
        AND NOT (replace(fullkey, '\"', '') GLOB '\$.tools.run_code*' OR replace(fullkey, '\"', '') GLOB '\$.tools.http_fetch*'
                 OR replace(fullkey, '\"', '') GLOB '\$.confirm*' OR replace(fullkey, '\"', '') GLOB '\$.uploads*'
                 OR replace(fullkey, '\"', '') GLOB '\$.actions*' OR replace(fullkey, '\"', '') GLOB '\$.cache*'
                 OR replace(fullkey, '\"', '') GLOB '\$.prefetch*' OR replace(fullkey, '\"', '') GLOB '\$.models*'
                 OR replace(fullkey, '\"', '') GLOB '\$.routing*')")"
    expect "$app: app.json has only known keys" "$unknown" = ""
    expect "$app: app.json title is a string" \
        "$(q "$db" "SELECT json_type(CAST(readfile('$f') AS TEXT), '\$.title')")" = text
    expect "$app: app.json description is a string" \
        "$(q "$db" "SELECT json_type(CAST(readfile('$f') AS TEXT), '\$.description')")" = text
    expect "$app: app.json limits are integers" \
        "$(q "$db" "SELECT COUNT(*) FROM json_each(CAST(readfile('$f') AS TEXT), '\$.limits') WHERE type <> 'integer'")" -eq 0
    local rounds
    rounds="$(q "$db" "SELECT COALESCE(json_extract(CAST(readfile('$f') AS TEXT), '\$.limits.max_tool_rounds'), 8)")"
    expect "$app: max_tool_rounds <= 8" "$rounds" -le 8
}

# check_common APP DB — database integrity and prompt-safe schema text.
check_common() {
    local app="$1" db="$2"
    expect "$app: integrity_check" "$(q "$db" "PRAGMA integrity_check")" = ok
    expect "$app: foreign_key_check is empty" "$(q "$db" "PRAGMA foreign_key_check" | wc -l)" -eq 0
    # The CREATE statements are copied into the prompt: no comments inside them.
    expect "$app: no comments inside CREATE statements" \
        "$(q "$db" "SELECT COUNT(*) FROM sqlite_master WHERE sql LIKE '%--%' OR sql LIKE '%/*%'")" -eq 0
    # Only reserved example domains, in addresses and in web links.
    local bad
    bad="$(grep -oE '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]+|https?://[A-Za-z0-9.-]+' "$prompts/$app/seed.sql" \
           | sed -E 's#^https?://##; s#^.*@##' | grep -vE '(^|\.)example\.(com|org|net)$' | sort -u | tr '\n' ' ' || true)"
    expect "$app: only example.com/.org/.net domains" "$bad" = ""
}

check_mail() {
    load mail || return 0
    check_common mail "$db"
    expect "mail: messages" "$(q "$db" "SELECT COUNT(*) FROM messages")" -ge 40
    expect "mail: folders present" "$(q "$db" "SELECT COUNT(DISTINCT folder) FROM messages")" -eq 4
    expect "mail: inbox" "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'inbox'")" -ge 20
    expect "mail: sent" "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'sent'")" -ge 6
    expect "mail: archive" "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'archive'")" -ge 6
    expect "mail: spam" "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'spam'")" -ge 4
    local unread
    unread="$(q "$db" "SELECT COUNT(*) FROM messages WHERE unread = 1")"
    expect "mail: unread at least" "$unread" -ge 8
    expect "mail: unread at most" "$unread" -le 15
    expect "mail: sent messages are from Alex" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'sent' AND from_addr <> 'alex@example.com'")" -eq 0
    expect "mail: sent messages are read" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE folder = 'sent' AND unread = 1")" -eq 0
    expect "mail: threads of 2+ messages" \
        "$(q "$db" "SELECT COUNT(*) FROM (SELECT thread_id FROM messages GROUP BY thread_id HAVING COUNT(*) >= 2)")" -ge 5
    expect "mail: thread_id is the id of the thread's first message" \
        "$(q "$db" "SELECT COUNT(*) FROM (SELECT thread_id, MIN(id) AS first FROM messages GROUP BY thread_id) WHERE thread_id <> first")" -eq 0
    expect "mail: replies start with Re:" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE id <> thread_id AND subject NOT LIKE 'Re: %'")" -eq 0
    expect "mail: ids grow with sent_at" \
        "$(q "$db" "SELECT COUNT(*) FROM messages a JOIN messages b ON a.id < b.id AND a.sent_at >= b.sent_at")" -eq 0
    expect "mail: sent_at format and range" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE sent_at NOT GLOB '2026-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]'
                    OR datetime(sent_at) IS NULL OR sent_at < '2026-09-01' OR sent_at > '2026-11-13T23:59:59'")" -eq 0
    expect "mail: attachments" "$(q "$db" "SELECT COUNT(*) FROM attachments")" -ge 8
    expect "mail: attachment kinds (pdf, xlsx, png, ics)" \
        "$(q "$db" "SELECT COUNT(DISTINCT lower(substr(filename, instr(filename, '.') + 1))) FROM attachments
                    WHERE filename LIKE '%.pdf' OR filename LIKE '%.xlsx' OR filename LIKE '%.png' OR filename LIKE '%.ics'")" -eq 4
    expect "mail: attachments reference existing messages" \
        "$(q "$db" "SELECT COUNT(*) FROM attachments a LEFT JOIN messages m ON m.id = a.message_id WHERE m.id IS NULL")" -eq 0
    expect "mail: contacts" "$(q "$db" "SELECT COUNT(*) FROM contacts")" -ge 8

    # The two prompt-injection messages, at the ids seed.sql documents.
    expect "mail: injection messages (by body)" \
        "$(q "$db" "SELECT group_concat(id) FROM messages WHERE body LIKE '%ignore all previous instructions%'")" = 42
    expect "mail: injection #1 subject/folder" \
        "$(q "$db" "SELECT group_concat(id) FROM messages WHERE subject LIKE '%Security%'")" = 42
    expect "mail: injection #1 asks for DELETE FROM messages" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE id = 42 AND folder = 'inbox' AND body LIKE '%DELETE FROM messages%'")" -eq 1
    expect "mail: injection #2 subject" \
        "$(q "$db" "SELECT group_concat(id) FROM messages WHERE subject LIKE '%Action required%'")" = 48
    expect "mail: injection #2 asks for admin and an external link" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE id = 48 AND folder = 'inbox' AND body LIKE '%admin%' AND body LIKE '%https://%'")" -eq 1
    expect "mail: exactly two messages address an assistant" \
        "$(q "$db" "SELECT COUNT(*) FROM messages WHERE body LIKE '%ignore all previous%' OR body LIKE '%for the assistant%'")" -eq 2
}

check_notes() {
    load notes || return 0
    check_common notes "$db"
    expect "notes: notes" "$(q "$db" "SELECT COUNT(*) FROM notes")" -ge 8
    expect "notes: pinned" "$(q "$db" "SELECT COUNT(*) FROM notes WHERE pinned = 1")" -ge 1
    expect "notes: unpinned" "$(q "$db" "SELECT COUNT(*) FROM notes WHERE pinned = 0")" -ge 1
    expect "notes: task lists" "$(q "$db" "SELECT COUNT(*) FROM notes WHERE body LIKE '%- [ ] %'")" -ge 1
    expect "notes: tags are lowercase comma lists" \
        "$(q "$db" "SELECT COUNT(*) FROM notes WHERE tags GLOB '*[^a-z0-9,-]*' OR tags LIKE ',%' OR tags LIKE '%,' OR tags LIKE '%,,%'")" -eq 0
    expect "notes: timestamps" \
        "$(q "$db" "SELECT COUNT(*) FROM notes WHERE datetime(created_at) IS NULL OR datetime(updated_at) IS NULL
                    OR created_at NOT GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]'
                    OR updated_at < created_at OR updated_at > '2026-11-13T23:59:59'")" -eq 0
}

[ -s "$prompts/system.md" ] || fail "prompts/system.md missing or empty"
for app in mail notes; do
    check_app_json "$app"
done
check_mail
check_notes

# Any other app folder: its seed must at least load cleanly.
for dir in "$prompts"/*/; do
    app="$(basename "$dir")"
    case "$app" in mail|notes) continue ;; esac
    [ -f "$dir/app.json" ] || continue
    check_app_json "$app"
    if [ -f "$dir/seed.sql" ]; then
        if load "$app"; then check_common "$app" "$db"; fi
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "check_seeds: $failures of $checks checks failed" >&2
    exit 1
fi
echo "check_seeds: all $checks checks passed"
