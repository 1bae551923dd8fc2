"""WSGI sample apps for drover's tests."""
import os
import time
from wsgiref.validate import validator


def sleepy(environ, start_response):
    """Sleeps ?ms= milliseconds and answers its pid."""
    qs = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    time.sleep(int(qs.get("ms", "0")) / 1000.0)
    body = ("%d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _plain(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/boom":
        raise RuntimeError("boom on purpose")
    if path == "/post":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(n)
        body = ("%d %s\n" % (len(data), __import__("hashlib").md5(data).hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (("chunk %d\n" % i).encode() for i in range(3))
    body = ("%s %d\n" % (environ.get("SCRIPT_NAME", ""), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


# Every request through Python's own PEP 3333 validator.
validated = validator(_plain)
