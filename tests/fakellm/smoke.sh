#!/usr/bin/env bash
# smoke.sh — a quick end-to-end check of fakellm over real HTTP (curl + jq).
# Not part of CI; run by hand after changing fakellm:
#     tests/fakellm/smoke.sh [path/to/fakellm]
# Exits non-zero on the first failed check.
set -euo pipefail

BIN=${1:-build/tests/fakellm}
[ -x "$BIN" ] || { echo "smoke: no fakellm binary at $BIN" >&2; exit 2; }
TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- fakellm stderr:" >&2; cat "$TMP/err" >&2 || true; exit 1; }
ok() { echo "ok - $*"; }
expect_eq() { [ "$1" == "$2" ] || fail "$3: expected [$2], got [$1]"; ok "$3"; }

cat >"$TMP/script.json" <<'EOF'
{
  "defaults": {"chunk_chars": 8},
  "rules": [
    {"name": "hello", "match": "say hello", "chunk_chars": 3,
     "reply": {"content": "héllo wörld ✓ {{model}}"}},
    {"name": "tool", "match": "path: /mail/\\n", "tool_results": 0,
     "reply": {"tool_calls": [{"name": "sql", "arguments": {"query": "SELECT 1"}},
                              {"name": "set_state", "arguments": "{bad json"}]}},
    {"name": "after-tool", "match": "path: /mail/\\n", "tool_results_min": 1, "last_tool_result_match": "^id",
     "reply": {"content": "# Inbox\n{{last_tool_result}}"}},
    {"name": "flaky", "match": "flaky", "times": 1, "fault": {"status": 503, "retry_after": 2}},
    {"name": "flaky-ok", "match": "flaky", "reply": {"content": "recovered"}},
    {"name": "stall", "match": "stall-head", "fault": {"stall_ms": 300}, "reply": {"content": "late"}},
    {"name": "midstall", "match": "stall-mid", "fault": {"stall_after_chunks": 2, "stall_chunks_ms": 300},
     "reply": {"content": "0123456789abcdef"}},
    {"name": "slow", "match": "slow", "ttft_ms": 2000, "reply": {"content": "slow"}},
    {"name": "trunc", "match": "truncate", "fault": {"truncate_after_chunks": 2},
     "reply": {"content": "0123456789abcdefghijklmnop"}},
    {"name": "malformed", "match": "malformed", "fault": {"malformed_chunk": true}, "reply": {"content": "x"}},
    {"name": "drop", "match": "drop", "fault": {"close": true}},
    {"name": "an-only", "protocol": "anthropic", "match": "which protocol", "reply": {"content": "anthropic"}},
    {"name": "oa-only", "protocol": "openai", "match": "which protocol", "reply": {"content": "openai"}},
    {"name": "by-model", "model": "^claude-opus", "match": "which model", "reply": {"content": "opus"}},
    {"name": "other-model", "match": "which model", "reply": {"content": "other"}},
    {"name": "overload", "match": "overload-mid", "fault": {"stream_error": "overloaded_error"},
     "reply": {"content": "0123456789abcdef"}},
    {"name": "busy", "match": "busy", "fault": {"status": 529}}
  ]
}
EOF

# Startup validation: an unknown key is named, exit status 2.
echo '{"rules": [{"reply": {"content": "x"}, "colour": 1}]}' >"$TMP/bad.json"
set +e
"$BIN" --listen 127.0.0.1:0 --script "$TMP/bad.json" >/dev/null 2>"$TMP/bad.err"; rc=$?
set -e
expect_eq "$rc" 2 "bad script exits 2"
grep -q 'unknown key "colour"' "$TMP/bad.err" || fail "bad script message: $(cat "$TMP/bad.err")"
ok "bad script names the key"
set +e
"$BIN" --listen 0.0.0.0:0 --script "$TMP/script.json" >/dev/null 2>&1; rc=$?
set -e
expect_eq "$rc" 2 "non-loopback listen refused"

"$BIN" --listen 127.0.0.1:0 --script "$TMP/script.json" --port-file "$TMP/port" --record "$TMP/rec.jsonl" \
    >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
expect_eq "$(head -1 "$TMP/out")" "fakellm listening on http://127.0.0.1:$PORT" "listening line"
URL=http://127.0.0.1:$PORT

expect_eq "$(curl -s "$URL/_fakellm/health")" ok "health"

chat() { curl -s -H 'Content-Type: application/json' "$URL/v1/chat/completions" -d "$1"; }
msg() { jq -cn --arg u "$1" --argjson s "${2:-false}" \
    '{model:"m1",stream:$s,messages:[{role:"system",content:"You are figment."},{role:"user",content:$u}]}'; }
sse_json() { grep '^data: {' | sed 's/^data: //'; }

# Non-streaming reply with templates and usage.
R=$(chat "$(msg 'say hello')")
expect_eq "$(jq -r .choices[0].message.content <<<"$R")" "héllo wörld ✓ m1" "non-stream content"
expect_eq "$(jq -r '.object + " " + .choices[0].finish_reason' <<<"$R")" "chat.completion stop" "non-stream shape"
expect_eq "$(jq '.usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' <<<"$R")" true "usage sums"

# Streaming: role first, 3-character UTF-8-safe pieces, finish_reason, [DONE].
S=$(chat "$(msg 'say hello' true)")
expect_eq "$(sse_json <<<"$S" | head -1 | jq -c .choices[0].delta)" '{"role":"assistant","content":""}' "role chunk"
expect_eq "$(sse_json <<<"$S" | jq -rj '.choices[0].delta.content // empty')" "héllo wörld ✓ m1" "stream content"
expect_eq "$(sse_json <<<"$S" | jq -c '[.choices[0].delta.content // empty | length]' | tr -d '\n')" \
    '[0][3][3][3][3][3][1][]' "pieces of 3 characters (UTF-8 aware)"
expect_eq "$(sse_json <<<"$S" | tail -1 | jq -r .choices[0].finish_reason)" stop "final chunk"
expect_eq "$(tail -n 1 <<<"$S")" "data: [DONE]" "[DONE] last"

# Tool calls, streamed with usage.
TOOLREQ=$(jq -cn '{model:"m1",stream:true,stream_options:{include_usage:true},
    tools:[{type:"function",function:{name:"sql",parameters:{}}}],
    messages:[{role:"system",content:"S"},{role:"user",content:"# Interaction\npath: /mail/\nquery: {}"}]}')
S=$(chat "$TOOLREQ")
expect_eq "$(sse_json <<<"$S" | jq -c 'select(.choices[0].delta.tool_calls[0].id) | .choices[0].delta.tool_calls[0] |
    [.index, .type, .function.name, .function.arguments]' | tr '\n' ' ')" \
    '[0,"function","sql",""] [1,"function","set_state",""] ' "tool call heads"
expect_eq "$(sse_json <<<"$S" | jq -rj '.choices[0].delta.tool_calls[0] | select(.index == 0) | .function.arguments')" \
    '{"query":"SELECT 1"}' "tool 0 arguments"
expect_eq "$(sse_json <<<"$S" | jq -rj '.choices[0].delta.tool_calls[0] | select(.index == 1) | .function.arguments')" \
    '{bad json' "tool 1 raw arguments"
expect_eq "$(sse_json <<<"$S" | jq -r '.choices[0].finish_reason // empty')" tool_calls "finish tool_calls"
expect_eq "$(sse_json <<<"$S" | tail -1 | jq -c '[.choices, (.usage|has("prompt_tokens_details"))]')" '[[],true]' \
    "usage chunk"
S=$(chat "$TOOLREQ")
[ "$(sse_json <<<"$S" | tail -1 | jq .usage.prompt_tokens_details.cached_tokens)" -gt 0 ] || fail "cached_tokens"
ok "cached_tokens on a repeated prefix"

# The tool result round.
R=$(chat "$(jq -cn '{model:"m1",messages:[{role:"user",content:"path: /mail/\nx"},
    {role:"assistant",content:null,tool_calls:[{id:"c1",type:"function",function:{name:"sql",arguments:"{}"}}]},
    {role:"tool",tool_call_id:"c1",content:"id | subject\n(0 rows)"}]}')")
expect_eq "$(jq -r .choices[0].message.content <<<"$R")" $'# Inbox\nid | subject\n(0 rows)' "tool result template"

# Request validation.
code() { curl -s -o "$TMP/body" -w '%{http_code}' "$URL/v1/chat/completions" "$@"; }
expect_eq "$(code -d '{nope')" 400 "invalid JSON -> 400"
expect_eq "$(jq -r .error.type "$TMP/body")" invalid_request_error "error shape"
expect_eq "$(code -d '{"messages":[]}')" 400 "missing model -> 400"
expect_eq "$(code -d '{"model":"m"}')" 400 "missing messages -> 400"
expect_eq "$(code -d '{"model":"m","messages":"hi"}')" 400 "messages not an array -> 400"
expect_eq "$(code -d '{"model":"m","messages":[{"role":"user","content":"x"}],"bogus":1}')" 400 "unknown param -> 400"
expect_eq "$(code -d '{"model":"m","messages":[{"role":"tool","tool_call_id":"x","content":"x"}]}')" 400 \
    "orphan tool message -> 400"
expect_eq "$(code -d '{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"x"}]}')" \
    400 "unanswered tool call -> 400"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/nothing")" 404 "unknown path -> 404"

# Faults.
H=$(curl -s -D - -o /dev/null "$URL/v1/chat/completions" -d "$(msg flaky)")
grep -q '^HTTP/1.1 503' <<<"$H" || fail "flaky status: $H"
grep -qi '^retry-after: 2' <<<"$H" || fail "retry-after: $H"
ok "status fault with Retry-After"
expect_eq "$(chat "$(msg flaky)" | jq -r .choices[0].message.content)" recovered "times: 1 then the next rule"

T=$(curl -s -o /dev/null -w '%{time_total}' "$URL/v1/chat/completions" -d "$(msg stall-head)")
awk "BEGIN{exit !($T >= 0.3)}" || fail "stall_ms took $T"
ok "stall_ms delays the answer"
T=$(curl -s -o "$TMP/body" -w '%{time_total}' "$URL/v1/chat/completions" -d "$(msg stall-mid true)")
awk "BEGIN{exit !($T >= 0.3)}" || fail "stall_after_chunks took $T"
expect_eq "$(sse_json <"$TMP/body" | jq -rj '.choices[0].delta.content // empty')" 0123456789abcdef \
    "stall_after_chunks then the rest"

set +e
curl -s -o "$TMP/body" "$URL/v1/chat/completions" -d "$(msg truncate true)"; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "truncate: curl succeeded"
grep -q DONE "$TMP/body" && fail "truncate: [DONE] was sent"
expect_eq "$(grep -c '^data: ' "$TMP/body")" 2 "truncate_after_chunks: 2 events then an abrupt end (curl $rc)"

chat "$(msg malformed true)" | grep -q '^data: {"choices": \[$' || fail "malformed chunk"
ok "malformed_chunk"

set +e
curl -s -o /dev/null "$URL/v1/chat/completions" -d "$(msg drop)"; rc=$?
set -e
expect_eq "$rc" 52 "close: empty reply (curl 52)"

# A client that gives up mid-wait leaves the server healthy.
set +e
curl -s -m 0.2 -o /dev/null "$URL/v1/chat/completions" -d "$(msg slow true)"
set -e
expect_eq "$(curl -s "$URL/_fakellm/health")" ok "healthy after a client disconnect"

R=$(chat "$(msg 'nothing matches this')")
grep -q 'No rule matched' <<<"$(jq -r .choices[0].message.content <<<"$R")" || fail "no-match page"
ok "no-match page"


# ---- The Anthropic Messages protocol (POST /v1/messages), same rules. ----
AU=$URL/v1/messages
AH=(-H 'anthropic-version: 2023-06-01' -H 'content-type: application/json')
amsg() { jq -cn --arg u "$1" --argjson s "${2:-false}" --arg m "${3:-claude-x}" \
    '{model:$m,max_tokens:256,stream:$s,system:[{type:"text",text:"You are figment.",cache_control:{type:"ephemeral"}}],
      messages:[{role:"user",content:$u}]}'; }
anth() { curl -s "${AH[@]}" "$AU" -d "$1"; }
acode() { curl -s -o "$TMP/body" -w '%{http_code}' "$@" "$AU"; }
events() { grep '^event: ' | sed 's/^event: //' | tr '\n' ' '; }
adata() { grep '^data: {' | sed 's/^data: //'; }

R=$(anth "$(amsg 'say hello')")
expect_eq "$(jq -r '.type + " " + .role + " " + .stop_reason + " " + .content[0].type' <<<"$R")" \
    "message assistant end_turn text" "anthropic: non-stream shape"
expect_eq "$(jq -r .content[0].text <<<"$R")" "héllo wörld ✓ claude-x" "anthropic: non-stream content"
expect_eq "$(jq -c '.usage | keys' <<<"$R")" \
    '["cache_creation_input_tokens","cache_read_input_tokens","input_tokens","output_tokens"]' "anthropic: usage keys"

S=$(anth "$(amsg 'say hello' true)")
expect_eq "$(events <<<"$S")" "message_start content_block_start ping $(printf 'content_block_delta %.0s' $(seq 8))\
content_block_stop message_delta message_stop " "anthropic: event sequence (22 characters in pieces of 3)"
expect_eq "$(paste -d' ' <(grep '^event: ' <<<"$S" | sed 's/^event: //') <(adata <<<"$S" | jq -r .type) |
    awk '$1 != $2' | wc -l)" 0 "anthropic: each event: line names its data's type"
expect_eq "$(adata <<<"$S" | jq -rj 'select(.type == "content_block_delta") | .delta.text')" \
    "héllo wörld ✓ claude-x" "anthropic: streamed text (3-character pieces)"
expect_eq "$(adata <<<"$S" | jq -r 'select(.type == "message_delta") | .delta.stop_reason')" end_turn "anthropic: stop_reason"

# Tool use, streamed: input_json_delta fragments assemble into the arguments.
ATOOL=$(jq -cn '{model:"claude-x",max_tokens:100,stream:true,
    tools:[{name:"sql",input_schema:{type:"object"},cache_control:{type:"ephemeral"}}],
    messages:[{role:"user",content:"# Interaction\npath: /mail/\nquery: {}"}]}')
S=$(anth "$ATOOL")
expect_eq "$(adata <<<"$S" | jq -c 'select(.type == "content_block_start") | .content_block | [.type, .name, .input]' |
    tr '\n' ' ')" '["tool_use","sql",{}] ["tool_use","set_state",{}] ' "anthropic: tool_use blocks"
expect_eq "$(adata <<<"$S" | jq -rj 'select(.type == "content_block_delta" and .index == 0) | .delta.partial_json' |
    jq -c .)" '{"query":"SELECT 1"}' "anthropic: tool 0 input from input_json_delta"
expect_eq "$(adata <<<"$S" | jq -rj 'select(.type == "content_block_delta" and .index == 1) | .delta.partial_json')" \
    '{bad json' "anthropic: tool 1 raw input"
expect_eq "$(adata <<<"$S" | jq -r 'select(.type == "message_delta") | .delta.stop_reason')" tool_use \
    "anthropic: stop_reason tool_use"

# Prompt caching: the marked prefix is written once, then read.
CM=$(amsg 'say hello' false claude-cache)
R1=$(anth "$CM"); R2=$(anth "$CM")
expect_eq "$(jq -c '[.usage.cache_creation_input_tokens > 0, .usage.cache_read_input_tokens]' <<<"$R1")" '[true,0]' \
    "anthropic: cache write on the first request"
expect_eq "$(jq -c '[.usage.cache_creation_input_tokens, .usage.cache_read_input_tokens > 0]' <<<"$R2")" '[0,true]' \
    "anthropic: cache read on the second"
expect_eq "$(jq '.usage.cache_read_input_tokens' <<<"$R2")" "$(jq '.usage.cache_creation_input_tokens' <<<"$R1")" \
    "anthropic: read what was written"

# The tool result round: tool_result blocks count as tool results, text blocks as the user's words.
R=$(anth "$(jq -cn '{model:"claude-x",max_tokens:100,messages:[
    {role:"user",content:[{type:"text",text:"path: /mail/\nx"}]},
    {role:"assistant",content:[{type:"text",text:"Looking."},{type:"tool_use",id:"toolu_1",name:"sql",input:{}}]},
    {role:"user",content:[{type:"tool_result",tool_use_id:"toolu_1",content:[{type:"text",text:"id | subject\n(0 rows)"}]}]}]}')")
expect_eq "$(jq -r .content[0].text <<<"$R")" $'# Inbox\nid | subject\n(0 rows)' "anthropic: tool result template"

# protocol and model rule keys.
expect_eq "$(anth "$(amsg 'which protocol')" | jq -r .content[0].text)" anthropic "protocol rule: anthropic"
expect_eq "$(chat "$(msg 'which protocol')" | jq -r .choices[0].message.content)" openai "protocol rule: openai"
expect_eq "$(anth "$(amsg 'which model' false claude-opus-9)" | jq -r .content[0].text)" opus "model rule matches"
expect_eq "$(anth "$(amsg 'which model' false claude-haiku)" | jq -r .content[0].text)" other "model rule skips"

# Validation, in Anthropic's error shape.
expect_eq "$(acode "${AH[@]}" -d '{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}')" 400 \
    "anthropic: missing model -> 400"
expect_eq "$(jq -r '.type + " " + .error.type' "$TMP/body")" "error invalid_request_error" "anthropic: error shape"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","messages":[{"role":"user","content":"x"}]}')" 400 \
    "anthropic: missing max_tokens -> 400"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}')" 400 \
    "anthropic: max_tokens 0 -> 400"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":"x"}]}')" 400 \
    "anthropic: first message not user -> 400"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}')" \
    400 "anthropic: roles not alternating -> 400"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t9","content":"r"}]}]}')" \
    400 "anthropic: tool_result without its tool_use -> 400"
grep -q 'unexpected `tool_use_id`' "$TMP/body" || fail "tool_result message: $(cat "$TMP/body")"
expect_eq "$(acode "${AH[@]}" -d '{"model":"m","max_tokens":5,"bogus":1,"messages":[{"role":"user","content":"x"}]}')" 400 \
    "anthropic: unknown param -> 400"
expect_eq "$(acode -d '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}')" 400 \
    "anthropic: no anthropic-version -> 400"

# Faults, Anthropic-shaped.
expect_eq "$(acode "${AH[@]}" -d "$(amsg busy)")" 529 "anthropic: status 529"
expect_eq "$(jq -r .error.type "$TMP/body")" overloaded_error "anthropic: 529 is overloaded_error"
S=$(anth "$(amsg overload-mid true)")
expect_eq "$(events <<<"$S")" "message_start content_block_start ping content_block_delta error " \
    "stream_error: an error event after the first delta"
expect_eq "$(adata <<<"$S" | tail -1 | jq -c .)" \
    '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' "stream_error: the event"
S=$(chat "$(msg overload-mid true)")
expect_eq "$(sse_json <<<"$S" | tail -1 | jq -r .error.type)" overloaded_error "stream_error on the OpenAI side"
set +e
curl -s -o "$TMP/body" "${AH[@]}" "$AU" -d "$(amsg truncate true)"; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "anthropic truncate: curl succeeded"
expect_eq "$(grep -c '^event: ' "$TMP/body")" 2 "anthropic truncate_after_chunks: 2 events (curl $rc)"
anth "$(amsg malformed true)" | grep -q '^data: {"type": "content_block_delta", "index": \[$' || fail "anthropic malformed"
ok "anthropic malformed_chunk"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "$AU")" 405 "anthropic: GET -> 405"

# Recorded requests.
N=$(curl -s "$URL/_fakellm/requests" | jq length)
[ "$N" -gt 10 ] || fail "recorded $N requests"
expect_eq "$(curl -s "$URL/_fakellm/requests" | jq -r '.[0].messages[1].content')" "say hello" "first recorded body"
expect_eq "$(wc -l <"$TMP/rec.jsonl")" "$N" "--record has one line per request"
curl -s -X DELETE "$URL/_fakellm/requests" >/dev/null
expect_eq "$(curl -s "$URL/_fakellm/requests")" "[]" "DELETE clears"

# Runtime script replacement and API keys.
expect_eq "$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "$URL/_fakellm/script" -d '{"rules":[],"extra":1}')" 400 \
    "bad PUT script -> 400"
grep -q 'unknown key' "$TMP/body" || fail "bad PUT message: $(cat "$TMP/body")"
expect_eq "$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "$URL/_fakellm/script" \
    -d '{"rules":[{"protocol":"grpc","reply":{"content":"x"}}]}')" 400 "bad protocol -> 400"
grep -q 'rules\[0\].protocol' "$TMP/body" || fail "bad protocol message: $(cat "$TMP/body")"
expect_eq "$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "$URL/_fakellm/script" \
    -d '{"rules":[{"fault":{"stream_error":"Overloaded!"},"reply":{"content":"x"}}]}')" 400 "bad stream_error -> 400"
grep -q 'rules\[0\].fault.stream_error' "$TMP/body" || fail "bad stream_error message: $(cat "$TMP/body")"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$URL/_fakellm/script" \
    -d '{"require_api_key":"sk-test","rules":[{"reply":{"content":"new"}}]}')" 200 "PUT script"
expect_eq "$(code -d "$(msg x)")" 401 "no key -> 401"
expect_eq "$(code -H 'Authorization: Bearer sk-wrong' -d "$(msg x)")" 401 "wrong key -> 401"
expect_eq "$(curl -s -H 'Authorization: Bearer sk-test' "$URL/v1/chat/completions" -d "$(msg x)" |
    jq -r .choices[0].message.content)" new "right key, new script"
expect_eq "$(acode "${AH[@]}" -d "$(amsg x)")" 401 "anthropic: no x-api-key -> 401"
expect_eq "$(jq -r .error.type "$TMP/body")" authentication_error "anthropic: authentication_error"
expect_eq "$(acode "${AH[@]}" -H 'x-api-key: sk-wrong' -d "$(amsg x)")" 401 "anthropic: wrong key -> 401"
expect_eq "$(acode "${AH[@]}" -H 'Authorization: Bearer sk-test' -d "$(amsg x)")" 401 "anthropic: Bearer is not x-api-key"
expect_eq "$(curl -s "${AH[@]}" -H 'x-api-key: sk-test' "$AU" -d "$(amsg x)" | jq -r .content[0].text)" new \
    "anthropic: right key"

kill "$PID"
wait "$PID" || fail "fakellm exited with $?"
PID=
echo "smoke: all checks passed"
