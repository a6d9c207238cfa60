#!/usr/bin/env bash
# Schema fuzzing: runs schemathesis over every operation of the served OpenAPI description against
# the real gateway binary, whose upstreams are a local stub (.ci/stub_upstream.py), with every check
# but positive-data acceptance: fails on any 5xx, on any answer (status, content type, headers,
# body) the description does not allow, on a schema-invalid request the gateway accepts, and on
# the authentication, method and resource checks. Twice: with API keys, and open (no key).
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

upstream() { # name, kind, extra toml
    printf '[upstreams.%s]\nkind = "%s"\nbase_url = "%s/%s"\nrate_limit = { per_second = 1000, burst = 1000 }\ntimeout_ms = 2000\n%s\n\n' \
        "$1" "$2" "$stub" "$1" "$3"
}
# A gateway's directory: config.toml (with an API key holding every scope when $2 is "keys", none
# when "open"), its mappings and, once it runs, its ledger.
configure() { # dir, keys|open
    mkdir -p "$1"
    cp -r mappings "$1/mappings"
    {
        printf '[server]\nlisten = "127.0.0.1:0"\nmappings_dir = "mappings"\n\n'
        if [ "$2" = keys ]; then
            printf '[[server.api_keys]]\nname = "schemathesis"\nkey_env = "GATEWAY_API_KEY"\n'
            printf 'scopes = ["promo-codes:write", "promo-codes:read", "sync-jobs:write", "sync-jobs:read", "metrics:read"]\n\n'
        fi
        printf '[ledger]\npath = "ledger.db"\n\n'
        upstream spacebring spacebring 'auth = { scheme = "basic", username_env = "SPACEBRING_API_KEY", password_env = "SPACEBRING_API_SECRET" }'
        upstream partnero partnero 'auth = { scheme = "bearer", token_env = "PARTNERO_API_KEY" }'
        upstream moltin moltin 'auth = { scheme = "bearer", token_env = "MOLTIN_ACCESS_TOKEN" }'
        for v in v2 v3; do
            upstream "limio-$v" limio "version = \"$v\"
auth = { scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"$stub/limio-$v/oauth2/token\", client_id_env = \"LIMIO_CLIENT_ID\", client_secret_env = \"LIMIO_CLIENT_SECRET\" }"
        done
        upstream loop loop 'auth = { scheme = "bearer", token_env = "LOOP_API_TOKEN" }'
    } >"$1/config.toml"
}

export SPACEBRING_API_KEY=k SPACEBRING_API_SECRET=s PARTNERO_API_KEY=t MOLTIN_ACCESS_TOKEN=t \
    LIMIO_CLIENT_ID=id LIMIO_CLIENT_SECRET=secret LOOP_API_TOKEN=t GATEWAY_API_KEY=schemathesis-key

# Every check but positive-data acceptance: a schema-valid request may still break a rule no
# schema can state (a campaign with no mapping file, a code another campaign holds...). Schemathesis
# leaves out the operation that served the description it loaded (GET /openapi.json) unless a
# filter names it; this filter names every operation, so all are tested.
fuzz() { # dir, extra schemathesis arguments...
    local dir=$1; shift
    start "$dir/gateway.log" "${CARGO_TARGET_DIR:-target}/debug/promo-gateway" --config "$dir/config.toml" --listen 127.0.0.1:0
    "$VENV/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://$addr/openapi.json" \
        --include-path-regex '.*' \
        "$@" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$MAX_EXAMPLES" \
        --generation-deterministic \
        --workers 1 \
        --no-color
}

# With API keys: every request carries a key with every scope, so the operations' own answers are
# reached, while the requests schemathesis makes without valid credentials meet the documented 401.
configure "$work/keys" keys
fuzz "$work/keys" --header "Authorization: Bearer $GATEWAY_API_KEY"

# Open (no key configured): the served description requires none, and nothing answers 401.
configure "$work/open" open
fuzz "$work/open"
