#!/usr/bin/env bash
# Measures, in one run on one machine, the same trivial WSGI app and the
# same PHP script served by drover and by the usual stacks:
#   WSGI: drover's shim (2 instances of one thread, 4 slots each: requests
#         wait in the instance as in uWSGI's listen queue) | the same with
#         one slot each (strictly one request at a time per instance) |
#         nginx + uWSGI (2 processes) | nginx + gunicorn (2 sync workers)
#   PHP:  drover fastcgi pool (2 instances) | nginx + php-fpm (pm static, 2)
# with wrk, and prints req/s, p99 and the ratios.
#
#   bench/apps.sh [DURATION] [CONNECTIONS]      (defaults: 10s 16)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-16}

need=()
for p in wrk nginx-light uwsgi uwsgi-plugin-python3 gunicorn php-cgi php8.2-fpm; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/" ./cmd/drover
cat > "$work/hello.py" <<'PY'
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]
PY
cat > "$work/hello.php" <<'PHP'
<?php echo "hello\n";
PHP

# drover: both pools in one server.
cat > "$work/drover.toml" <<TOML
[server]
listen = ["127.0.0.1:18101"]
admin = ""
access_log = ""
runtime_dir = "$work/run"
[[route]]
path = "/wsgi"
pool = "wsgi"
[[route]]
path = "/wsgi1"
pool = "wsgi1"
[[route]]
path = "/php"
pool = "php"
[pool.wsgi]
kind = "wsgi"
python = "/usr/bin/python3"
app = "hello:application"
pythonpath = ["$work"]
start = "always"
min_instances = 2
max_instances = 2
instance_concurrency = 4
threads = 1
[pool.wsgi1]
kind = "wsgi"
python = "/usr/bin/python3"
app = "hello:application"
pythonpath = ["$work"]
start = "always"
min_instances = 2
max_instances = 2
instance_concurrency = 1
[pool.php]
kind = "fastcgi"
command = ["php-cgi", "-n"]
script = "$work/hello.php"
start = "always"
min_instances = 2
max_instances = 2
env = { PHP_FCGI_MAX_REQUESTS = "0" }
TOML
"$work/drover" serve -c "$work/drover.toml" 2>"$work/drover.log" & pids+=($!)

# uWSGI, 2 processes, behind nginx.
uwsgi --plugin python3 --socket "$work/uwsgi.sock" --chmod-socket=666 --wsgi-file "$work/hello.py" \
  --master --processes 2 --disable-logging --die-on-term >"$work/uwsgi.log" 2>&1 & pids+=($!)
# gunicorn, 2 sync workers, behind nginx.
gunicorn --chdir "$work" --workers 2 --worker-class sync --bind "unix:$work/gunicorn.sock" hello:application \
  >"$work/gunicorn.log" 2>&1 & pids+=($!)
# php-fpm, pm static with 2 children, behind nginx.
cat > "$work/fpm.conf" <<FPM
[global]
error_log = $work/fpm.log
daemonize = no
[www]
listen = $work/fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 2
FPM
php-fpm8.2 -n -y "$work/fpm.conf" -R & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream gunicorn { server unix:$work/gunicorn.sock; keepalive 32; }
  server {
    listen 127.0.0.1:18102;
    location / { include /etc/nginx/uwsgi_params; uwsgi_pass unix:$work/uwsgi.sock; }
  }
  server {
    listen 127.0.0.1:18103;
    location / { proxy_pass http://gunicorn; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:18104;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $work/hello.php;
      fastcgi_pass unix:$work/fpm.sock;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

for url in 127.0.0.1:18101/wsgi 127.0.0.1:18101/wsgi1 127.0.0.1:18101/php 127.0.0.1:18102/ 127.0.0.1:18103/ 127.0.0.1:18104/; do
  ok=
  for _ in $(seq 100); do curl -sf "http://$url" >/dev/null && ok=1 && break; sleep 0.1; done
  [ -n "$ok" ] || { echo "not answering: $url"; tail -5 "$work"/*.log; exit 1; }
done

run() {
  wrk -t2 -c"$conns" -d2s "http://$1" >/dev/null 2>&1
  wrk -t2 -c"$conns" -d"$dur" --latency "http://$1" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 } $1=="99%" { p99=ms($2) } / Non-2xx/ { bad=$NF }
    END { printf "%.0f %.3f %d\n", rps, p99, bad }'
}
read -r dw dw99 dwbad < <(run 127.0.0.1:18101/wsgi)
read -r d1 d199 _ < <(run 127.0.0.1:18101/wsgi1)
read -r uw uw99 _ < <(run 127.0.0.1:18102/)
read -r gu gu99 _ < <(run 127.0.0.1:18103/)
read -r dp dp99 dpbad < <(run 127.0.0.1:18101/php)
read -r fp fp99 _ < <(run 127.0.0.1:18104/)

printf '\nwrk -t2 -c%s -d%s, %s cores; 2 workers each\n' "$conns" "$dur" "$(nproc)"
printf '%-22s %10s %9s\n' stack req/s p99_ms
printf '%-22s %10s %9s\n' "drover wsgi shim" "$dw" "$dw99" "drover wsgi, 1 slot" "$d1" "$d199" "nginx + uWSGI" "$uw" "$uw99" "nginx + gunicorn" "$gu" "$gu99" \
  "drover fastcgi php" "$dp" "$dp99" "nginx + php-fpm" "$fp" "$fp99"
awk -v dw="$dw" -v d1="$d1" -v uw="$uw" -v gu="$gu" -v dp="$dp" -v fp="$fp" 'BEGIN {
  printf "drover wsgi / nginx+uWSGI:    %.2f (target >= 0.9; with 1 slot: %.2f)\n", dw/uw, d1/uw
  printf "drover wsgi / nginx+gunicorn: %.2f (target >= 1)\n", dw/gu
  printf "drover php  / nginx+php-fpm:  %.2f (target >= 0.9)\n", dp/fp }'
[ "${dwbad:-0}" = 0 ] && [ "${dpbad:-0}" = 0 ] || echo "warning: drover answered non-2xx: wsgi $dwbad php $dpbad"
