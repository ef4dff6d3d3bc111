#!/usr/bin/env bash
# Starts the router in the local profile: a one-node Ray with its metrics on a fixed port, then
# `serve run` on the local serve config. Ctrl-C stops both.
#   Router:  http://localhost:${ROUTER_PORT:-8000}   Metrics: http://localhost:${METRICS_PORT:-8080}/metrics
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
METRICS_PORT=${METRICS_PORT:-8080}

# --- config check: before Ray starts, a bad router config stops here, every problem listed ---
"$BIN/python" -m app.check_config deployments/configs/local.yaml || exit 1
# --- end of config check ---

"$BIN/ray" stop --force >/dev/null 2>&1 || true
# Serve's ingress mode (deployments/configs/serve.env: HAProxy, throughput-optimized, or Ray's
# Python proxy where no HAProxy binary exists): every Ray process inherits it from here.
while IFS= read -r setting; do
  [ -n "$setting" ] && export "${setting?}"
done < <("$BIN/python" -m deployments.configs.profiles serve-env)
"$BIN/ray" start --head --metrics-export-port="$METRICS_PORT" --include-dashboard=false \
  --disable-usage-stats >/dev/null
# `ray stop --force` kills Serve's HAProxy manager before it can stop HAProxy (which would keep
# port 8000), so HAProxy is stopped by name too.
trap '"$BIN/ray" stop --force >/dev/null 2>&1 || true; pkill -f "haproxy -db -f /tmp/haproxy-serve/" || true' EXIT
echo "hybrid-router: metrics at http://localhost:$METRICS_PORT/metrics (series ray_router_*)"
"$BIN/serve" run --address auto deployments/configs/local.yaml
