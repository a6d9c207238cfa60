#!/usr/bin/env bash
# Lints the committed OpenAPI description with Redocly's recommended rules, as client generators
# and linters read it: fails on any error or warning. Redocly CLI comes from the npm registry,
# pinned, into target/ (Node.js and npm are on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

REDOCLY_VERSION=2.77.0
DIR=target/redocly-cli
if [ ! -x "$DIR/node_modules/.bin/redocly" ] || ! grep -q "\"version\": \"$REDOCLY_VERSION\"" "$DIR/node_modules/@redocly/cli/package.json"; then
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --silent --no-audit --no-fund "@redocly/cli@$REDOCLY_VERSION" >/dev/null
fi
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
"$DIR/node_modules/.bin/redocly" lint openapi.json --format=stylish 2>&1 | grep -v '[║╔╚]' || true
totals=$("$DIR/node_modules/.bin/redocly" lint openapi.json --format=json 2>/dev/null | python3 -c \
    'import json, sys; t = json.load(sys.stdin)["totals"]; print(t["errors"], t["warnings"])')
read -r errors warnings <<<"$totals"
echo "redocly lint openapi.json: $errors error(s), $warnings warning(s)"
[ "$errors" = 0 ] && [ "$warnings" = 0 ]
