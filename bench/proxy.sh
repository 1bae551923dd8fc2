#!/usr/bin/env bash
# Measures, in one run on one machine, the same Go hello worker (the sample
# app) reached directly, through drover, through nginx with a keep-alive
# upstream, and through bench/minproxy (the floor of any Go proxy here),
# with wrk. Prints req/s, p50 and p99, and the ratios drover/direct,
# drover/nginx and drover/minproxy.
#
#   bench/proxy.sh [DURATION] [CONNECTIONS]      (defaults: 10s 32)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-32}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/" ./cmd/drover ./examples/sampleapp ./bench/minproxy

PORT=18081 "$work/sampleapp" & pids+=($!)

cat > "$work/drover.toml" <<TOML
[server]
listen = ["127.0.0.1:18082"]
admin = ""
access_log = ""
runtime_dir = "$work/run"
[[route]]
path = "/"
pool = "hello"
[pool.hello]
kind = "http"
command = ["$work/sampleapp"]
start = "always"
min_instances = 1
max_instances = 1
instance_concurrency = 256
TOML
"$work/drover" serve -c "$work/drover.toml" 2>"$work/drover.log" & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream hello { server 127.0.0.1:18081; keepalive 256; }
  server {
    listen 127.0.0.1:18083;
    location / {
      proxy_pass http://hello;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

"$work/minproxy" 127.0.0.1:18084 127.0.0.1:18081 & pids+=($!)

for port in 18081 18082 18083 18084; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
done

# run NAME PORT -> "rps p50ms p99ms"
run() {
  wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$2/" >/dev/null 2>&1 # warm-up
  wrk -t2 -c"$conns" -d"$dur" --latency "http://127.0.0.1:$2/" > "$work/$1.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }' "$work/$1.txt"
}
read -r d_rps d_p50 d_p99 < <(run direct 18081)
read -r g_rps g_p50 g_p99 < <(run drover 18082)
read -r n_rps n_p50 n_p99 < <(run nginx 18083)
read -r m_rps m_p50 m_p99 < <(run minproxy 18084)

printf '\nGo hello worker, wrk -t2 -c%s -d%s, %s cores\n' "$conns" "$dur" "$(nproc)"
printf '%-8s %10s %9s %9s\n' path req/s p50_ms p99_ms
printf '%-8s %10s %9s %9s\n' direct "$d_rps" "$d_p50" "$d_p99"
printf '%-8s %10s %9s %9s\n' drover "$g_rps" "$g_p50" "$g_p99"
printf '%-8s %10s %9s %9s\n' nginx "$n_rps" "$n_p50" "$n_p99"
printf '%-8s %10s %9s %9s\n' minproxy "$m_rps" "$m_p50" "$m_p99"
awk -v g="$g_rps" -v d="$d_rps" -v n="$n_rps" -v m="$m_rps" -v gp="$g_p99" -v np="$n_p99" 'BEGIN {
  printf "drover/direct req/s:   %.2f\n", g/d
  printf "drover/nginx req/s:    %.2f (target >= 1)\n", g/n
  printf "drover/minproxy req/s: %.2f; minproxy/nginx: %.2f\n", g/m, m/n
  printf "drover p99 - nginx p99: %+.3f ms (target <= +1)\n", gp-np }'
