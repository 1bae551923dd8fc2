// Package http1 is a lean HTTP/1.1 client transport for exactly one
// upstream: the worker process ("instance") that a drover backend talks to
// over a unix socket or loopback TCP.
//
// # Model: one goroutine per exchange
//
// net/http.Transport gives every connection two goroutines, readLoop and
// writeLoop, and hands each request and response between them and the
// caller over channels. That design serves many hosts, HTTP/2, proxies and
// TLS; for a single local upstream it costs several goroutine switches and
// channel operations per request, which profiles show as a large share of
// drover's per-request CPU.
//
// Transport instead does the whole exchange on the goroutine that calls
// RoundTrip:
//
//   - it pops an idle connection (a LIFO slice under a mutex, so the most
//     recently used and therefore warmest connection is taken) or dials;
//   - a request without a body is written with a single write call (the
//     head is built in a pooled byte buffer rather than a bufio.Writer:
//     same effect, one copy less);
//   - the response head is read from a pooled bufio.Reader that belongs to
//     the connection while it lives. A lean parser (readHead) handles the
//     common well-formed head that is entirely buffered, with 4
//     allocations instead of about 9; anything unusual goes to
//     http.ReadResponse, untouched, so its rules and errors apply. A
//     differential fuzz test holds the lean parser to http.ReadResponse's
//     results. Interim 1xx responses other than 101 are skipped (and
//     reported to an httptrace.ClientTrace's Got1xxResponse, which
//     httputil.ReverseProxy uses to forward them);
//   - the response body is read by the caller through a wrapper that puts
//     the connection back in the idle pool as soon as the body reaches EOF
//     (keep-alive permitting), or closes the connection when the body is
//     closed before its end (unless the rest, at most 4 KiB, is already
//     buffered).
//
// No goroutine is started for a request without a body. A request with a
// body is the one exception: its body is streamed by a short-lived
// goroutine while the caller reads the response, so that an upstream that
// answers early (413 without reading the body) or reads and writes at the
// same time cannot deadlock the exchange. The connection is reused only
// once that goroutine has finished without error. A body of known length
// goes out with the head in the same write; a body of unknown length is
// sent chunked, the head first (as net/http does: the body may be slow to
// come), then one write per chunk read.
//
// Context cancellation is implemented with context.AfterFunc, which sets a
// deadline in the past on the connection: a blocked read or write returns
// at once and the connection is discarded. No goroutine waits on the
// context.
//
// # Stale connections and retries
//
// An upstream may close a keep-alive connection while it sits idle
// (Node.js does after 5 s by default). Without a readLoop the transport
// notices only when it uses the connection, so RoundTrip retries once, on
// a freshly dialled connection, when a reused connection fails before any
// byte of the response was read and the request can be replayed (no body,
// or GetBody set) and either nothing was written or the request is
// idempotent (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key header), the
// same rule as net/http. For requests that cannot be retried, a reused
// connection is first probed with a non-blocking MSG_PEEK recv, so a
// connection the upstream already closed is dropped before anything is
// sent. When a stale connection is found,
// every connection that has been idle longer is closed too.
//
// # Not supported
//
// Transport speaks HTTP/1.1 only, to one address, with no proxy, TLS,
// compression or redirects: it sends what the caller gives it. It does not
// add User-Agent or Accept-Encoding headers. Header keys are written as
// they are in the map, in map order.
package http1
