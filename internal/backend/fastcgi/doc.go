// Package fastcgi is drover's FastCGI client: a Transport that carries
// net/http requests to one FastCGI application (php-cgi, mapserv, flup…)
// in the responder role, so that the rest of drover can treat a fastcgi
// instance like any other http.RoundTripper.
//
// # Model
//
// One request runs on a connection at a time, always with request ID 1.
// FastCGI allows multiplexing several requests over one connection, but the
// applications drover runs do not support it (php-cgi and libfcgi programs
// such as mapserv answer FCGI_MPXS_CONNS=0), and a pool already bounds how
// many requests an instance gets; so a request that finds no idle
// connection simply dials a new one.
//
// Every request is sent with FCGI_KEEP_CONN, so the application keeps the
// connection open after FCGI_END_REQUEST. The connection goes back to a
// small idle list once the whole response (up to FCGI_END_REQUEST) has been
// read and the whole request body has been written; a response body closed
// early, a request body the application did not consume, a cancelled
// context or any protocol error closes the connection instead, because its
// state would be unknown to the next request. A kept connection that the
// application closed while it was idle is noticed before reuse (a
// non-blocking peek) or, failing that, when the request fails before any
// answer; the request is then sent again on a new connection if that is
// safe.
//
// Nothing is buffered whole. The request body is copied to FCGI_STDIN
// records while the response is already being read (an application may
// answer before it has read its input, and both sides blocking on full
// socket buffers would deadlock), and the response body hands FCGI_STDOUT
// content to the reader as records arrive, so flush() in PHP reaches the
// client at once.
//
// # php-cgi
//
// A single-process php-cgi (PHP_FCGI_CHILDREN unset or 0) serves one
// connection at a time and, with FCGI_KEEP_CONN, blocks reading the kept
// connection until it is closed; a second connection waits in the listen
// backlog meanwhile. So the number of requests in flight to one php-cgi
// instance must not exceed its number of processes, and Ping reuses an idle
// connection rather than dialing a new one that php-cgi would not accept.
// php-cgi 8.2 answers FCGI_GET_VALUES with FCGI_MAX_CONNS=1,
// FCGI_MAX_REQS=1 and FCGI_MPXS_CONNS=0 for a single process.
package fastcgi
