#!/usr/bin/env bash
# Schema fuzzing: runs schemathesis over every operation of the served OpenAPI description against
# the real gateway binary, whose upstreams are a local stub (.ci/stub_upstream.py). Fails on any
# 5xx and on any answer (status, content type, headers, body) that the description does not allow.
# The gateway requires an API key (every scope); schemathesis sends it on every request, so the
# operations' own answers are reached, while requests it makes without valid credentials meet the
# documented 401.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-30}
VENV=target/schemathesis-venv

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
cargo build --locked --bin promo-gateway

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a server in the background and waits for its "listening on ADDR" line.
start() {
    local log=$1; shift
    : >"$log"
    "$@" >"$log" 2>"$log.err" &
    pids+=($!)
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$log" | head -1)
        [ -n "$addr" ] && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$* did not start:" >&2
    cat "$log" "$log.err" >&2
    exit 1
}

start "$work/stub.log" python3 -u .ci/stub_upstream.py
stub="http://$addr"

cp -r mappings "$work/mappings"
upstream() { # name, kind, extra toml
    printf '[upstreams.%s]\nkind = "%s"\nbase_url = "%s/%s"\nrate_limit = { per_second = 1000, burst = 1000 }\ntimeout_ms = 2000\n%s\n\n' \
        "$1" "$2" "$stub" "$1" "$3"
}
{
    printf '[server]\nlisten = "127.0.0.1:0"\nmappings_dir = "mappings"\n\n'
    printf '[[server.api_keys]]\nname = "schemathesis"\nkey_env = "GATEWAY_API_KEY"\n'
    printf 'scopes = ["promo-codes:write", "promo-codes:read", "sync-jobs:write", "sync-jobs:read", "metrics:read"]\n\n'
    printf '[ledger]\npath = "ledger.db"\n\n'
    upstream spacebring spacebring 'auth = { scheme = "basic", username_env = "SPACEBRING_API_KEY", password_env = "SPACEBRING_API_SECRET" }'
    upstream partnero partnero 'auth = { scheme = "bearer", token_env = "PARTNERO_API_KEY" }'
    upstream moltin moltin 'auth = { scheme = "bearer", token_env = "MOLTIN_ACCESS_TOKEN" }'
    for v in v2 v3; do
        upstream "limio-$v" limio "version = \"$v\"
auth = { scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"$stub/limio-$v/oauth2/token\", client_id_env = \"LIMIO_CLIENT_ID\", client_secret_env = \"LIMIO_CLIENT_SECRET\" }"
    done
    upstream loop loop 'auth = { scheme = "bearer", token_env = "LOOP_API_TOKEN" }'
} >"$work/config.toml"

export SPACEBRING_API_KEY=k SPACEBRING_API_SECRET=s PARTNERO_API_KEY=t MOLTIN_ACCESS_TOKEN=t \
    LIMIO_CLIENT_ID=id LIMIO_CLIENT_SECRET=secret LOOP_API_TOKEN=t GATEWAY_API_KEY=schemathesis-key
start "$work/gateway.log" target/debug/promo-gateway --config "$work/config.toml" --listen 127.0.0.1:0
gateway="http://$addr"

# Schemathesis leaves out the operation that served the description it loaded (GET /openapi.json)
# unless a filter names it; this filter names every operation, so all are tested.
"$VENV/bin/schemathesis" run "$gateway/openapi.json" \
    --include-path-regex '.*' \
    --header "Authorization: Bearer $GATEWAY_API_KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --generation-deterministic \
    --workers 1 \
    --no-color
