"""A plain WSGI application exercising the protocol, for drover's tests.

uWSGI loads it directly (callable "application"); validated.py wraps it in
wsgiref.validate for the shim.
"""
import hashlib
import json
import os
import sys
import threading

_barrier = None
_barrier_lock = threading.Lock()


def _text(start_response, body, status='200 OK', extra=()):
    if isinstance(body, str):
        body = body.encode('utf-8')
    start_response(status, [('Content-Type', 'text/plain'),
                            ('Content-Length', str(len(body)))] + list(extra))
    return [body]


def _query(environ):
    out = {}
    for part in environ.get('QUERY_STRING', '').split('&'):
        if '=' in part:
            k, v = part.split('=', 1)
            out[k] = v
    return out


def _read_all(inp):
    h = hashlib.md5()
    n = 0
    while True:
        data = inp.read(65536)
        if not data:
            return h.hexdigest(), n
        h.update(data)
        n += len(data)


def application(environ, start_response):
    path = environ['PATH_INFO']
    q = _query(environ)

    if path == '/hello':
        return _text(start_response, 'hello %s %s q=%s' % (
            environ['REQUEST_METHOD'], path, environ.get('QUERY_STRING', '')))

    if path == '/env':
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        for k in ('wsgi.url_scheme', 'wsgi.multithread', 'wsgi.multiprocess',
                  'wsgi.run_once', 'wsgi.version'):
            env[k] = environ.get(k)
        # PEP 3333: bytes travel as latin-1 code points; give them back raw.
        env['PATH_INFO_UTF8'] = path.encode('latin-1').decode('utf-8', 'replace')
        return _text(start_response, json.dumps(env), extra=[
            ('X-App', 'common')])

    if path == '/md5':
        digest, n = _read_all(environ['wsgi.input'])
        return _text(start_response, '%s %d' % (digest, n))

    if path == '/lines':
        n = 0
        longest = 0
        for line in environ['wsgi.input']:
            n += 1
            longest = max(longest, len(line))
        return _text(start_response, '%d %d' % (n, longest))

    if path == '/readline-mix':
        inp = environ['wsgi.input']
        first = inp.readline()
        part = inp.read(3)
        rest = inp.readlines()
        return _text(start_response, json.dumps(
            [first.decode(), part.decode(), [l.decode() for l in rest]]))

    if path == '/ignore-body':
        # Answers without reading the request body, streaming with no length.
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return (b'ignored %d\n' % i for i in range(3))

    if path == '/stream':
        fifo = q['fifo']

        def gen():
            start_response('200 OK', [('Content-Type', 'text/plain')])
            yield b'first\n'
            with open(fifo, 'rb') as f:  # blocks until the test writes
                got = f.read()
            yield b'second ' + got
        return gen()

    if path == '/error-before':
        raise RuntimeError('boom before start_response')

    if path == '/error-after':
        def gen():
            start_response('200 OK', [('Content-Type', 'text/plain')])
            yield b'partial'
            raise RuntimeError('boom after headers')
        return gen()

    if path == '/exc-info':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        try:
            raise ValueError('oops')
        except ValueError:
            # Replaces the 200 before anything was sent (PEP 3333 exc_info).
            return _exc_info_answer(start_response)

    if path == '/exc-info-late':
        def gen():
            start_response('200 OK', [('Content-Type', 'text/plain')])
            yield b'x'
            try:
                raise ValueError('late oops')
            except ValueError:
                start_response('500 Internal Server Error',
                               [('Content-Type', 'text/plain')], sys.exc_info())
            yield b'never'
        return gen()

    if path == '/write':
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        write(b'written ')
        write(b'then ')
        return [b'returned']

    if path == '/no-content':
        start_response('204 No Content', [])
        return []

    if path == '/short':
        # Promises more than it sends: the response must come out broken.
        start_response('200 OK', [('Content-Type', 'text/plain'),
                                  ('Content-Length', '100')])
        return [b'only this']

    if path == '/big':
        n = int(q.get('n', '1048576'))
        block = b'0123456789abcdef' * 4096

        def gen():
            start_response('200 OK', [('Content-Type', 'application/octet-stream')])
            left = n
            while left > 0:
                chunk = block[:min(left, len(block))]
                left -= len(chunk)
                yield chunk
        return gen()

    if path == '/file':
        f = open(__file__, 'rb')
        size = os.fstat(f.fileno()).st_size
        start_response('200 OK', [('Content-Type', 'text/x-python'),
                                  ('Content-Length', str(size))])
        return environ['wsgi.file_wrapper'](f, 1024)

    if path == '/barrier':
        global _barrier
        with _barrier_lock:
            if _barrier is None:
                _barrier = threading.Barrier(int(q['n']), timeout=20)
        _barrier.wait()
        return _text(start_response, 'together')

    if path == '/pid':
        return _text(start_response, str(os.getpid()))

    # PATH_INFO holds the path's bytes as latin-1 code points (PEP 3333).
    return _text(start_response,
                 'not found: ' + path.encode('latin-1').decode('utf-8'),
                 status='404 Not Found')


def _exc_info_answer(start_response):
    start_response('500 Internal Server Error',
                   [('Content-Type', 'text/plain'),
                    ('Content-Length', '13')], sys.exc_info())
    return [b'handled: oops']
