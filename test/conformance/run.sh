#!/usr/bin/env bash
# Runs MCP client-conformance scenarios (@modelcontextprotocol/conformance, installed locally) against
# our McpPool via test/conformance/client.ts. One summary line per scenario; exits 1 if any fails.
# Usage: test/conformance/run.sh [scenario ...]   (default: initialize tools_call sse-retry)
set -euo pipefail

cd "$(dirname "$0")/../.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(initialize tools_call sse-retry)
client="node_modules/.bin/tsx test/conformance/client.ts"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

failed=0
for scenario in "${scenarios[@]}"; do
  start=$SECONDS
  rc=0
  npx --no-install @modelcontextprotocol/conformance client \
    --command "$client" --scenario "$scenario" --timeout 60000 >"$log" 2>&1 || rc=$?
  checks="$(grep -m1 -E '^Passed: ' "$log" || echo 'no results')"
  if [ "$rc" -eq 0 ] && grep -q 'OVERALL: PASSED' "$log"; then
    echo "conformance ${scenario}: PASSED (${checks}; $((SECONDS - start))s)"
  else
    failed=1
    echo "conformance ${scenario}: FAILED (exit ${rc}; ${checks}; $((SECONDS - start))s)"
    sed 's/^/    /' "$log" >&2
  fi
done
exit "$failed"
