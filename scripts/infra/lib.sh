# Shared helpers of the infra scripts (sourced, not run).
# Binaries built once live in LAMBDA_INFRA_CACHE (outside the repo, reused across runs);
# running services keep their data, PID and env files in LAMBDA_INFRA_STATE.
LAMBDA_INFRA_CACHE=${LAMBDA_INFRA_CACHE:-$HOME/.cache/luna-lambda-infra}
LAMBDA_INFRA_STATE=${LAMBDA_INFRA_STATE:-${TMPDIR:-/tmp}/luna-lambda-infra}
mkdir -p "$LAMBDA_INFRA_CACHE/bin" "$LAMBDA_INFRA_STATE"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS: readiness polling with a deadline.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "infra: nothing listens on 127.0.0.1:$port after $2 s" >&2; return 1; }
    sleep 0.1
  done
}

# stop_pid FILE: TERM the PID in FILE, wait for it (KILL after 10 s), remove FILE.
stop_pid() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
