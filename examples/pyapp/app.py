"""A small HTTP worker in Python for drover's tests: unlike a Go program,
CPython starts under a tight RLIMIT_AS, so it shows address_space at work.

It listens on $PORT (loopback) and answers:
  /pid            its pid
  /alloc?mb=N     allocates N MiB: 200 "allocated", or 507 when refused
  /limits         /proc/self/limits
"""
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse, parse_qs


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/pid":
            self.reply(200, "%d\n" % os.getpid())
        elif url.path == "/alloc":
            mb = int(q.get("mb", ["0"])[0])
            try:
                block = bytearray(mb << 20)
                del block
                self.reply(200, "allocated\n")
            except MemoryError:
                self.reply(507, "alloc failed: MemoryError\n")
        elif url.path == "/limits":
            with open("/proc/self/limits") as f:
                self.reply(200, f.read())
        else:
            self.reply(404, "not found\n")

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
