#!/usr/bin/env python3
"""drover_wsgi: the WSGI server that drover runs for pools of kind "wsgi".

Python 3 standard library only, so it runs in any interpreter or virtualenv
a pool names without installing anything into it.

Usage
-----
    python3 drover_wsgi.py --app MODULE[:CALLABLE] [--pythonpath DIR]... [--dir DIR]

--app         the application, "package.module:callable"; the callable may be
              a dotted attribute path ("mod:app.wsgi_app"); without ":" the
              callable is "application" (as mod_wsgi and uWSGI assume).
--pythonpath  a directory put at the front of sys.path (repeatable, in order).
--dir         change to this directory before importing; it goes on sys.path
              (after the --pythonpath entries), as the current directory
              does when no --dir is given. Relative --pythonpath entries
              are taken relative to it.

Environment (each a fallback for or addition to the flags):
    DROVER_APP          the --app value when the flag is absent
    DROVER_PYTHONPATH   more sys.path entries, os.pathsep-separated, after
                        the --pythonpath ones
    DROVER_DIR          the --dir value when the flag is absent
    DROVER_CONCURRENCY  connections drover may open (its slots on the
                        instance; default 1)
    DROVER_THREADS      DROVER_CONCURRENCY (the default: a thread per
                        connection) or 1: the main thread serves every
                        connection, one request at a time, and a request
                        waits in its socket for its turn, as requests wait
                        in uWSGI's listen queue.
    DROVER_READY_FD     a file descriptor; once the application has been
                        imported the shim writes "READY\\n" to it and closes
                        it, which is how drover knows the instance is ready.

fd 0 must be a listening stream socket (unix, normally). The shim moves it
to a private close-on-exec descriptor and puts /dev/null on fd 0, so that
processes the application starts do not inherit the listener and keep it
alive after the instance died.

If the application cannot be imported, the traceback goes to stderr and
the exit status is 1 (2 for bad usage or a missing listening socket).
SIGTERM and SIGINT stop the shim gracefully: requests in progress finish,
then it exits with status 0.

Wire format (the same one the Go side, internal/backend/uwsgi, documents)
-----------------------------------------------------------------------
Connections are persistent: drover sends requests one after another on a
connection, and opens at most DROVER_CONCURRENCY connections to an instance.

Request: a uwsgi packet, a 4-byte header
    modifier1 (u8) = 0, datasize (u16 little-endian), modifier2 (u8)
followed by datasize bytes of vars (the CGI/WSGI environ: REQUEST_METHOD,
PATH_INFO, HTTP_*, ...), with modifier2 = 0 each
    keysize (u16 LE), key, valsize (u16 LE), value
and with modifier2 = 1 (drover's compact form, which str.split parses at C
speed; used unless a key or value holds a NUL) each key and value followed
by a NUL byte; then the body:
  - with the var DROVER_CHUNKED=1: chunks, each a u32 LE length and that
    many bytes, ended by a zero length (bodies of unknown length, streamed);
  - otherwise exactly CONTENT_LENGTH bytes (none when absent or empty).
modifier1 = 100 is a uwsgi ping: the answer is the 4-byte header 100,0,0,1,
as uWSGI answers, and the connection stays open.

Response: an HTTP/1.1 status line and headers, then the body framed by the
application's Content-Length if it set one (or a Content-Length the shim
computed for a list or tuple response), else by chunked transfer encoding.
HEAD requests and 1xx/204/304 responses carry no body. A response that
cannot be completed (the application failed after the headers went out, or
produced fewer bytes than its Content-Length) is aborted by closing the
connection, so drover sees a truncated body and never a silently short one.
After each response the unread rest of the request body is read and
discarded (up to 1 MiB; beyond that the connection is closed instead).
"""

import os
import selectors
import signal
import socket
import sys
import threading
import traceback

_PONG = b'\x64\x00\x00\x01'
_DRAIN_LIMIT = 1 << 20
_CRLF = b'\r\n'
_END_HEAD_CHUNKED = b'Transfer-Encoding: chunked\r\n\r\n'
_END_HEAD_CHUNKED_LEN = len(_END_HEAD_CHUNKED)
_END_HEAD_EMPTY = b'Content-Length: 0\r\n\r\n'
_LAST_CHUNK = b'0\r\n\r\n'
_500_BODY = b'Internal Server Error\n'
_500_HEAD = (b'HTTP/1.1 500 Internal Server Error\r\n'
             b'Content-Type: text/plain; charset=utf-8\r\n'
             b'Content-Length: %d\r\n\r\n' % len(_500_BODY))

# Response body framing, decided when the first bytes go out.
_NONE, _IDENTITY, _CHUNKED = 0, 1, 2


def _log(msg):
    try:
        sys.stderr.write('drover_wsgi: %s\n' % msg)
        sys.stderr.flush()
    except Exception:
        pass


class ConnectionBroken(ConnectionError):
    """drover closed the connection in the middle of a request body."""


# --- wsgi.input ---------------------------------------------------------------

class _LineReader(object):
    """The file protocol wsgi.input needs on top of read and readline."""

    __slots__ = ()

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _Input(_LineReader):
    """wsgi.input for a body of CONTENT_LENGTH bytes.

    Reads never go past the body, so the next request on the connection stays
    intact; read(n) returns n bytes unless the body ends first, as a file does.
    """
    __slots__ = ('_r', '_left', 'broken')

    def __init__(self, rfile, length):
        self._r = rfile
        self._left = length
        self.broken = False

    def _short(self):
        self.broken = True
        raise ConnectionBroken('drover closed the connection before the '
                               'request body ended')

    def read(self, size=-1):
        left = self._left
        if left <= 0:
            return b''
        if size is None or size < 0 or size > left:
            size = left
        data = self._r.read(size)
        self._left = left - len(data)
        if len(data) < size:
            self._short()
        return data

    def readline(self, size=-1):
        left = self._left
        if left <= 0:
            return b''
        if size is None or size < 0 or size > left:
            size = left
        line = self._r.readline(size)
        self._left = left - len(line)
        if not line or (len(line) < size and line[-1:] != b'\n'):
            self._short()
        return line

    def drain(self, limit):
        """Discard the unread body; False when the connection can't be reused."""
        if self.broken:
            return False
        left = self._left
        if left <= 0:
            return True
        if left > limit:
            return False
        try:
            self.read(left)
        except OSError:
            return False
        return True


class _ChunkedInput(_LineReader):
    """wsgi.input for a DROVER_CHUNKED body: u32 LE length-prefixed chunks."""
    __slots__ = ('_r', '_left', '_done', 'broken')

    def __init__(self, rfile):
        self._r = rfile
        self._left = 0      # bytes left in the current chunk
        self._done = False  # the zero-length chunk was read
        self.broken = False

    def _short(self):
        self.broken = True
        raise ConnectionBroken('drover closed the connection before the '
                               'request body ended')

    def _next_chunk(self):
        if self._done:
            return False
        h = self._r.read(4)
        if len(h) != 4:
            self._short()
        n = h[0] | h[1] << 8 | h[2] << 16 | h[3] << 24
        if n == 0:
            self._done = True
            return False
        self._left = n
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            size = -1
        parts = []
        r = self._r
        while size:
            if self._left == 0 and not self._next_chunk():
                break
            n = self._left if size < 0 or size > self._left else size
            data = r.read(n)
            if len(data) != n:
                self._short()
            self._left -= n
            if size > 0:
                size -= n
            parts.append(data)
        if len(parts) == 1:
            return parts[0]
        return b''.join(parts)

    def readline(self, size=-1):
        if size is None or size < 0:
            size = -1
        parts = []
        r = self._r
        while size:
            if self._left == 0 and not self._next_chunk():
                break
            n = self._left if size < 0 or size > self._left else size
            line = r.readline(n)
            if not line:
                self._short()
            self._left -= len(line)
            if size > 0:
                size -= len(line)
            parts.append(line)
            if line[-1:] == b'\n':
                break
            if len(line) < n:
                self._short()
        if len(parts) == 1:
            return parts[0]
        return b''.join(parts)

    def drain(self, limit):
        if self.broken:
            return False
        try:
            while limit >= 0:
                if self._left == 0 and not self._next_chunk():
                    return True
                n = self._left
                if n > limit:
                    return False
                if len(self._r.read(n)) != n:
                    return False
                self._left = 0
                limit -= n
        except OSError:
            return False
        return False


class FileWrapper(object):
    """wsgi.file_wrapper: iterates a file-like object in blocks."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        # Larger reads mean fewer, larger chunks on the socket.
        self.blksize = max(blksize, 65536)
        if hasattr(filelike, 'close'):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


# --- responses -----------------------------------------------------------------

def _build_head(status, headers, is_head):
    """Validates start_response() arguments and encodes the response head.

    Returns (head, content_length, nobody): head is the status line and
    headers, each ending in CRLF, without the blank line; the framing header
    and the blank line are added when the first bytes go out, because only
    then is it known whether the shim can compute a Content-Length itself.
    """
    if type(status) is not str:
        raise TypeError('status must be str, not %s' % type(status).__name__)
    if len(status) < 4 or status[3] != ' ' or not status[:3].isdigit():
        raise ValueError('malformed status %r' % (status,))
    parts = ['HTTP/1.1 ', status, '\r\n']
    lines = 1
    cl = None
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError('header names and values must be str: %r'
                            % ((name, value),))
        n = len(name)
        if n == 14 or n == 17 or n == 10:
            lname = name.lower()
            if lname == 'content-length':
                cl = int(value)
                if cl < 0:
                    raise ValueError('negative Content-Length %r' % (value,))
            elif lname == 'transfer-encoding' or lname == 'connection':
                # Hop-by-hop (PEP 3333 forbids them): framing is the shim's.
                continue
        parts.append(name + ': ' + value + '\r\n')
        lines += 1
    s = ''.join(parts)
    # A CR or LF inside a name or value would let the application forge
    # headers or desynchronise the persistent connection: count them.
    if s.count('\n') != lines or s.count('\r') != lines:
        raise ValueError('response status or header contains a line break')
    code = status[:3]
    nobody = is_head or code[0] == '1' or code == '204' or code == '304'
    return s.encode('latin-1'), cl, nobody


def _as_bytes(data):
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError('response body must be bytes, not %s'
                    % type(data).__name__)


class _Response(object):
    """start_response, write and the framing of one response."""
    __slots__ = ('sock', 'is_head', 'head', 'cl', 'nobody', 'sent', 'mode',
                 'left', 'broken', 'incomplete')

    def __init__(self, sock, is_head):
        self.sock = sock
        self.is_head = is_head
        self.head = None
        self.cl = None
        self.nobody = False
        self.sent = False
        self.mode = _NONE
        self.left = 0
        self.broken = False      # sending failed: drover is gone
        self.incomplete = False  # fewer bytes than Content-Length

    def _send(self, bufs, total):
        try:
            n = self.sock.sendmsg(bufs)
            if n != total:  # only after a signal: finish the job
                self.sock.sendall(b''.join(bufs)[n:])
        except OSError:
            self.broken = True
            raise

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.head is not None:
            raise AssertionError('start_response() called again without '
                                 'exc_info')
        self.head, self.cl, self.nobody = _build_head(status, headers,
                                                      self.is_head)
        return self.write

    def write(self, data):
        if type(data) is not bytes:
            data = _as_bytes(data)
        if self.head is None:
            raise AssertionError('write() or body data before '
                                 'start_response()')
        if not data:
            return
        mode = self.mode
        if self.sent:
            if mode == _CHUNKED:
                n = len(data)
                size = b'%x\r\n' % n
                self._send([size, data, _CRLF], len(size) + n + 2)
            elif mode == _IDENTITY:
                left = self.left
                if left <= 0:
                    return
                if len(data) > left:
                    data = data[:left]
                self.left = left - len(data)
                self._send([data], len(data))
            return
        head = self.head
        if self.nobody:
            self.mode = _NONE
            self._send([head, _CRLF], len(head) + 2)
        elif self.cl is not None:
            left = self.cl
            if len(data) > left:
                data = data[:left]
            self.mode = _IDENTITY
            self.left = left - len(data)
            self._send([head, _CRLF, data], len(head) + 2 + len(data))
        else:
            n = len(data)
            size = b'%x\r\n' % n
            self.mode = _CHUNKED
            self._send([head, _END_HEAD_CHUNKED, size, data, _CRLF],
                       len(head) + _END_HEAD_CHUNKED_LEN + len(size) + n + 2)
        self.sent = True

    def send_all(self, items):
        """Sends a list or tuple response in one go with its Content-Length.

        Returns False (having sent nothing) when the generic path must do it.
        """
        if self.sent or self.head is None:
            return False
        total = 0
        for x in items:
            if type(x) is not bytes:
                return False
            total += len(x)
        head = self.head
        if self.nobody:
            bufs = [head, _CRLF]
            if self.is_head and self.cl is None and head[9:10] != b'1' \
                    and head[9:12] not in (b'204', b'304'):
                bufs[1] = b'Content-Length: %d\r\n\r\n' % total
            size = len(head) + len(bufs[1])
        elif self.cl is None:
            end = b'Content-Length: %d\r\n\r\n' % total
            bufs = [head, end]
            bufs.extend(items)
            size = len(head) + len(end) + total
        elif self.cl == total:
            bufs = [head, _CRLF]
            bufs.extend(items)
            size = len(head) + 2 + total
        else:
            return False
        self._send(bufs, size)
        self.sent = True
        self.mode = _NONE
        return True

    def finish(self):
        """Ends the body. False when the connection must be closed."""
        if self.head is None:
            raise AssertionError('the application returned without calling '
                                 'start_response()')
        if not self.sent:
            head = self.head
            if self.nobody or self.cl is not None:
                self._send([head, _CRLF], len(head) + 2)
                if not self.nobody and self.cl:
                    self.incomplete = True
            else:
                self._send([head, _END_HEAD_EMPTY],
                           len(head) + len(_END_HEAD_EMPTY))
            self.sent = True
        elif self.mode == _CHUNKED:
            self._send([_LAST_CHUNK], 5)
        elif self.mode == _IDENTITY and self.left > 0:
            self.incomplete = True
        if self.incomplete:
            _log('application sent fewer bytes than its Content-Length; '
                 'closing the connection')
            return False
        return True


def _handle(sock, rfile, app, env):
    """Runs the application for one request. False: close the connection."""
    cl = 0
    if env.get('DROVER_CHUNKED') == '1':
        del env['DROVER_CHUNKED']
        inp = _ChunkedInput(rfile)
    else:
        raw = env.get('CONTENT_LENGTH')
        try:
            cl = int(raw) if raw else 0
        except ValueError:
            cl = -1
        if cl < 0:
            _log('malformed CONTENT_LENGTH %r; closing the connection' % raw)
            return False
        inp = _Input(rfile, cl)
    env['wsgi.input'] = inp
    https = env.get('HTTPS')
    if https and https.lower() in ('on', '1', 'yes', 'true'):
        env['wsgi.url_scheme'] = 'https'
    r = _Response(sock, env.get('REQUEST_METHOD') == 'HEAD')
    result = None
    keep = True
    try:
        result = app(env, r.start_response)
        t = type(result)
        if (t is not list and t is not tuple) or not r.send_all(result):
            write = r.write
            for data in result:
                if data:
                    write(data)
        keep = r.finish()
    except Exception:
        keep = _failed(r, inp, env)
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            try:
                close()
            except Exception:
                _log('close() of the response iterable failed:\n'
                     + traceback.format_exc())
    if keep and r.broken:
        keep = False
    if keep:
        keep = inp.drain(_DRAIN_LIMIT)
        if keep and (cl > 0 or inp.__class__ is _ChunkedInput):
            # The body was read through rfile, whose buffer may now hold
            # the start of the next request (see _serve_all).
            keep = _KEEP_AFTER_BODY
    return keep


def _failed(r, inp, env):
    """Handles an exception from the application; returns keep-alive."""
    if r.broken or inp.broken:
        _log('%s %s: drover closed the connection: %s' % (
            env.get('REQUEST_METHOD'), env.get('REQUEST_URI'),
            sys.exc_info()[1]))
        return False
    _log('%s %s: application error:\n%s' % (
        env.get('REQUEST_METHOD'), env.get('REQUEST_URI'),
        traceback.format_exc()))
    if r.sent:
        # Too late for an error page: abort so drover sees a broken body.
        return False
    try:
        if r.is_head:
            r._send([_500_HEAD], len(_500_HEAD))
        else:
            r._send([_500_HEAD, _500_BODY], len(_500_HEAD) + len(_500_BODY))
    except OSError:
        return False
    r.sent = True
    return True


# --- connections -------------------------------------------------------------

class _State(object):
    def __init__(self, concurrency):
        self.busy = [False] * concurrency
        self.stopping = False


# _handle's answer for a connection to keep whose request had a body.
_KEEP_AFTER_BODY = 2


class _Wake(Exception):
    """Raised by the SIGTERM handler to stop _serve_all's wait."""


def _serve_one(sock, read, rfile, app, base, state, idx):
    """Reads and answers one request (or ping) on a connection.

    Returns False to close the connection, else a true value:
    _KEEP_AFTER_BODY when the request had a body.
    """
    head = read(4)
    if len(head) != 4:
        if head:
            _log('connection closed inside a request header')
        return False
    busy = state.busy
    busy[idx] = True
    try:
        size = head[1] | head[2] << 8
        if head[0] != 0:
            if head[0] == 100:
                if size and len(read(size)) != size:
                    return False
                sock.sendall(_PONG)
                return not state.stopping
            _log('unsupported uwsgi modifier1 %d; closing the connection'
                 % head[0])
            return False
        data = read(size)
        if len(data) != size:
            _log('connection closed inside request vars')
            return False
        env = base.copy()
        # latin-1 maps bytes 1:1 to code points, so byte offsets are
        # string offsets and values come out as PEP 3333 "native strings".
        s = data.decode('latin-1')
        if head[3] == 1:
            # drover's compact form: NUL-ended keys and values.
            parts = s.split('\0')
            if len(parts) % 2 != 1 or parts[-1]:
                _log('malformed compact vars; closing the connection')
                return False
            it = iter(parts)
            env.update(zip(it, it))
            keep = _handle(sock, rfile, app, env)
            return keep if not state.stopping else False
        pos = 0
        try:
            while pos < size:
                n = data[pos] | data[pos + 1] << 8
                pos += 2
                key = s[pos:pos + n]
                pos += n
                n = data[pos] | data[pos + 1] << 8
                pos += 2
                env[key] = s[pos:pos + n]
                pos += n
        except IndexError:
            pos = size + 1
        if pos != size:
            _log('malformed uwsgi vars; closing the connection')
            return False
        keep = _handle(sock, rfile, app, env)
        return keep if not state.stopping else False
    finally:
        busy[idx] = False


def _close_conn(sock, rfile, state, stop_when_idle=True):
    try:
        rfile.close()
    except OSError:
        pass
    sock.close()
    if stop_when_idle and state.stopping and not any(state.busy):
        _stop_now()


def _serve_conn(sock, app, base, state, idx):
    """Serves one connection until it closes (a thread per slot)."""
    rfile = sock.makefile('rb', 65536)
    read = rfile.read
    try:
        while _serve_one(sock, read, rfile, app, base, state, idx):
            pass
    except OSError:
        pass  # drover went away; nothing to answer
    finally:
        _close_conn(sock, rfile, state)


def _serve_all(lsock, app, base, state):
    """Serves every connection from the main thread, a request at a time.

    With one thread for several slots (connections), a request sent on one
    connection waits in its socket until the request before it is
    answered, as requests wait in uWSGI's listen queue, and the process is
    never idle while one is waiting. On SIGTERM (the handler raises _Wake
    when no request runs) the requests already sent are answered, then
    the loop ends.
    """
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ)
    conns = {}

    def serve(sock):
        rfile = conns[sock]
        state.busy[0] = True  # from here a SIGTERM waits for the answer
        try:
            keep = _serve_one(sock, rfile.read, rfile, app, base, state, 0)
            # A request read with a body may have brought the next one
            # into rfile's buffer, where select cannot see it.
            while keep == _KEEP_AFTER_BODY and _buffered(sock, rfile):
                keep = _serve_one(sock, rfile.read, rfile, app, base, state,
                                  0)
        except OSError:
            keep = False
        finally:
            state.busy[0] = False
        if not keep:
            sel.unregister(sock)
            del conns[sock]
            _close_conn(sock, rfile, state, stop_when_idle=False)

    while not state.stopping:
        try:
            ready = sel.select()
            for key, _ in ready:
                sock = key.fileobj
                if state.stopping:
                    break
                if sock is not lsock:
                    serve(sock)
                    continue
                try:
                    conn, _ = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    _log('accept: %s' % e)
                    threading.Event().wait(0.1)
                    continue
                conn.setblocking(True)
                conns[conn] = conn.makefile('rb', 65536)
                sel.register(conn, selectors.EVENT_READ)
        except _Wake:
            break
    # Stopping: answer what was sent already. Connections still in the
    # listen backlog were opened for requests drover has sent, or is
    # sending: take them, and give those a moment to arrive.
    fresh = set()
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:  # BlockingIOError: the backlog is empty
            break
        conn.setblocking(True)
        conns[conn] = conn.makefile('rb', 65536)
        sel.register(conn, selectors.EVENT_READ)
        fresh.add(conn)
    sel.unregister(lsock)
    while True:
        ready = [k.fileobj for k, _ in sel.select(0.1 if fresh else 0)]
        if not ready:
            break
        for sock in ready:
            fresh.discard(sock)
            serve(sock)
    for sock, rfile in list(conns.items()):
        _close_conn(sock, rfile, state, stop_when_idle=False)


def _buffered(sock, rfile):
    """Whether rfile holds bytes, or the socket has some, without waiting."""
    sock.setblocking(False)
    try:
        return bool(rfile.peek(1))
    except (BlockingIOError, InterruptedError):
        return False
    finally:
        sock.setblocking(True)


def _stop_now():
    """Ends the process from any thread: the SIGTERM handler exits when idle."""
    if threading.current_thread() is threading.main_thread():
        raise SystemExit(0)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(lsock, app, base, state, idx):
    while not state.stopping:
        try:
            conn, _ = lsock.accept()
        except OSError as e:
            if state.stopping:
                return
            _log('accept: %s' % e)
            # EMFILE and friends: don't spin; the backlog keeps the clients.
            threading.Event().wait(0.1)
            continue
        conn.setblocking(True)
        _serve_conn(conn, app, base, state, idx)


# --- start-up ----------------------------------------------------------------

def _usage(msg):
    sys.stderr.write('drover_wsgi: %s\n' % msg)
    sys.stderr.write('usage: drover_wsgi.py --app MODULE[:CALLABLE] '
                     '[--pythonpath DIR]... [--dir DIR]\n')
    sys.exit(2)


def _parse_args(argv):
    app = None
    paths = []
    wd = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        val = None
        if '=' in arg and arg.startswith('--'):
            arg, val = arg.split('=', 1)
        if arg in ('--app', '--pythonpath', '--dir'):
            if val is None:
                i += 1
                if i >= len(argv):
                    _usage('%s needs a value' % arg)
                val = argv[i]
            if arg == '--app':
                app = val
            elif arg == '--pythonpath':
                paths.append(val)
            else:
                wd = val
        elif arg in ('-h', '--help'):
            sys.stdout.write(__doc__)
            sys.exit(0)
        else:
            _usage('unknown argument %r' % argv[i])
        i += 1
    env = os.environ
    if app is None:
        app = env.get('DROVER_APP')
    if not app:
        _usage('no application: give --app or DROVER_APP')
    extra = env.get('DROVER_PYTHONPATH')
    if extra:
        paths.extend(p for p in extra.split(os.pathsep) if p)
    if wd is None:
        wd = env.get('DROVER_DIR') or None
    return app, paths, wd


def _load(spec):
    module, _, attr = spec.partition(':')
    attr = attr or 'application'
    obj = __import__(module)
    for part in module.split('.')[1:]:
        obj = getattr(obj, part)
    for part in attr.split('.'):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError('%s is not callable' % spec)
    return obj


def _take_listener():
    """Moves the listening socket off fd 0 (see the module doc)."""
    try:
        lsock = socket.socket(fileno=os.dup(0))
    except OSError as e:
        _usage('fd 0 is not a listening socket: %s' % e)
    try:
        if not lsock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            _usage('fd 0 is a socket but not listening')
    except OSError:
        pass
    lsock.setblocking(True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return lsock


def _signal_ready():
    fd = os.environ.pop('DROVER_READY_FD', None)
    if not fd:
        return
    try:
        fd = int(fd)
        os.write(fd, b'READY\n')
        os.close(fd)
    except (ValueError, OSError) as e:
        _log('DROVER_READY_FD: %s' % e)


def main(argv=None):
    spec, paths, wd = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        concurrency = int(os.environ.get('DROVER_CONCURRENCY') or 1)
        threads = int(os.environ.get('DROVER_THREADS') or concurrency)
    except ValueError:
        _usage('DROVER_CONCURRENCY and DROVER_THREADS must be numbers')
    if concurrency < 1 or threads not in (1, concurrency):
        _usage('DROVER_THREADS must be 1 or DROVER_CONCURRENCY')
    lsock = _take_listener()
    # print() from the application should reach drover's log when it
    # happens, not when a pipe buffer fills.
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass

    # The shim's own directory is no place to import the application from.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == here:
        del sys.path[0]
    if wd:
        os.chdir(wd)
    sys.path[0:0] = [os.path.abspath(p) for p in paths] + [os.getcwd()]

    try:
        app = _load(spec)
    except BaseException:
        traceback.print_exc()
        sys.stderr.write('drover_wsgi: cannot load application %r\n' % spec)
        sys.stderr.flush()
        os._exit(1)

    base = {
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.errors': sys.stderr,
        'wsgi.multithread': threads > 1,
        'wsgi.multiprocess': True,
        'wsgi.run_once': False,
        'wsgi.file_wrapper': FileWrapper,
        # wsgi.input returns b'' at the end of the body, even a chunked one.
        'wsgi.input_terminated': True,
        'SCRIPT_NAME': '',
    }
    state = _State(threads)
    queued = threads < concurrency  # one thread for several connections

    def on_term(signum, frame):
        first = not state.stopping
        state.stopping = True
        if any(state.busy):
            return  # the request in progress finishes first
        if queued:
            if first:
                raise _Wake()  # _serve_all answers what is queued, then ends
            return
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _signal_ready()

    if queued:
        lsock.setblocking(False)
        _serve_all(lsock, app, base, state)
        return 0
    if threads == 1:
        _worker(lsock, app, base, state, 0)
        return 0
    workers = []
    for i in range(threads):
        t = threading.Thread(target=_worker, name='drover-wsgi-%d' % i,
                             args=(lsock, app, base, state, i), daemon=True)
        t.start()
        workers.append(t)
    for t in workers:
        t.join()
    return 0


if __name__ == '__main__':
    sys.exit(main())
