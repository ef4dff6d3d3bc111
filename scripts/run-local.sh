#!/usr/bin/env bash
# Starts the router in the local profile (deployments/run_local.py): a one-node Ray cluster of its
# own (or the one $RAY_ADDRESS names), Serve on deployments/configs/local.yaml, and the router's
# JSON log ($ROUTER_LOG_DIR/router.jsonl, default ~/.cache/hybrid-router/logs/) on this terminal.
# Ctrl-C stops what it started, and nothing else.
#   Router:  http://localhost:${ROUTER_PORT:-8000}   Metrics: http://localhost:${METRICS_PORT:-8080}/metrics
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
# --- config check: before Ray starts, a bad router config stops here, every problem listed ---
"$BIN/python" -m app.check_config deployments/configs/local.yaml || exit 1
# --- end of config check ---

exec "$BIN/python" -m deployments.run_local "$@"
