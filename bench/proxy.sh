#!/usr/bin/env bash
# Measures, on one machine, the same Go hello worker (the sample app)
# reached directly, through drover, through nginx with a keep-alive
# upstream, and through two yardsticks: bench/minproxy (the floor of any
# Go proxy with a goroutine per connection) and bench/eprelay (a byte
# relay on epoll event loops, the floor of Go run the way nginx runs).
# Every path is measured in each of ROUNDS rounds, interleaved, because a
# shared 2-core VM drifts by 15% from one minute to the next; the medians
# are printed, with the ratios drover/direct, drover/nginx (also as the
# median of each round's own ratio), drover/minproxy, minproxy/nginx and
# eprelay/nginx.
#
#   bench/proxy.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 5s 32 3)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5s}
conns=${2:-32}
rounds=${3:-3}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/" ./cmd/drover ./examples/sampleapp ./bench/minproxy ./bench/eprelay

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
"$work/eprelay" 127.0.0.1:18085 127.0.0.1:18081 & pids+=($!)

for port in 18081 18082 18083 18084 18085; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
done

# run PORT -> "rps p50ms p99ms"
run() {
  wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$1/" >/dev/null 2>&1 # warm-up
  wrk -t2 -c"$conns" -d"$dur" --latency "http://127.0.0.1:$1/" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}
paths=(direct drover nginx minproxy eprelay)
ports=(18081 18082 18083 18084 18085)
for r in $(seq "$rounds"); do
  for i in "${!paths[@]}"; do
    echo "${paths[$i]} $(run "${ports[$i]}")" >> "$work/results"
  done
  printf 'round %s: %s\n' "$r" "$(awk -v r="$r" -v n=${#paths[@]} 'NR > (r-1)*n && NR <= r*n { printf "%s %s  ", $1, $2 }' "$work/results")"
done

# med PATH COLUMN -> the median of that column (2 req/s, 3 p50, 4 p99)
med() {
  awk -v p="$1" -v c="$2" '$1 == p { print $c }' "$work/results" | sort -g |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
printf '\nGo hello worker, wrk -t2 -c%s -d%s, medians of %s rounds, %s cores\n' "$conns" "$dur" "$rounds" "$(nproc)"
printf '%-9s %10s %9s %9s\n' path req/s p50_ms p99_ms
declare -A rps p99
for p in "${paths[@]}"; do
  rps[$p]=$(med "$p" 2) p99[$p]=$(med "$p" 4)
  printf '%-9s %10.0f %9.3f %9.3f\n' "$p" "${rps[$p]}" "$(med "$p" 3)" "${p99[$p]}"
done
# The same round's drover and nginx ran a few seconds apart, so their
# ratio is free of the drift between rounds: its median is the steadier
# figure of the two.
paired=$(awk -v n=${#paths[@]} '
  { row = int((NR - 1) / n); v[row, $1] = $2 }
  END { for (r = 0; r <= row; r++) print v[r, "drover"] / v[r, "nginx"] }' "$work/results" | sort -g |
  awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
awk -v g="${rps[drover]}" -v d="${rps[direct]}" -v n="${rps[nginx]}" -v m="${rps[minproxy]}" -v e="${rps[eprelay]}" \
  -v gp="${p99[drover]}" -v np="${p99[nginx]}" -v pr="$paired" 'BEGIN {
  printf "drover/direct req/s:   %.2f\n", g/d
  printf "drover/nginx req/s:    %.2f as medians; %.2f as the median of per-round ratios (target >= 1)\n", g/n, pr
  printf "drover/minproxy req/s: %.2f; minproxy/nginx: %.2f; eprelay/nginx: %.2f\n", g/m, m/n, e/n
  printf "drover p99 - nginx p99: %+.3f ms (target <= +1)\n", gp-np }'
