// Package cgi hosts CGI/1.1 programs (RFC 3875) behind an
// http.RoundTripper, for drover's pools of kind "cgi": mapserv run as a
// CGI, shell or Python CGI scripts.
//
// # Model
//
// A cgi pool has no long-lived instance: every RoundTrip is one exchange
// that starts one process through process.Start (so it gets the pool's
// identity, limits, cgroup, its own process group and the parent-death
// signal like any other worker), feeds it the request and streams its
// answer back. The pool bounds how many exchanges run at once
// (max_instances); this package never queues.
//
// The program is the script that the URL path names below Root (the
// longest prefix of the path naming a regular file is SCRIPT_NAME, the
// rest PATH_INFO, as in Apache's cgi-bin; a directory has no index), or the
// fixed Script (then the whole path is PATH_INFO, unless it starts with the
// script's base name). argv is Spec.Args followed by SCRIPT_FILENAME: the
// script is run by an interpreter ("python3", "php-cgi"), or executed
// directly when Spec.Args is empty. The environment is the pool's clean
// Spec.Env plus the CGI meta-variables, built by fastcgi.CGIParams exactly
// as drover's FastCGI client builds its params (nginx's fastcgi_params),
// so that a script sees the same variables under either kind. The working
// directory is Spec.Dir, or the script's directory.
//
// # Answers
//
//   - A path that names no file under Root is answered 404 Not Found by
//     RoundTrip itself: a response, not an error. A fixed Script that does
//     not exist is a configuration error and fails like any other start.
//   - A script that cannot be started (not executable, no such
//     interpreter, exec format error) is an error, which drover answers
//     502 bad-gateway.
//   - The script's standard output is parsed as a CGI response header
//     (fastcgi.ReadCGIHeader: Status, Location, header lines up to an
//     empty line; at most 1 MiB) and the rest is the response body,
//     streamed as the script writes it: nothing is buffered whole, so a
//     script that writes, flushes and waits reaches the client at once.
//     A script that exits, or closes its output, before the end of the
//     header is an error (502). Status 1xx is an error: a CGI response is
//     final. Local redirects (RFC 3875 section 6.2.2) are not followed: a
//     Location without Status is a 302 to the client.
//   - A valid Content-Length from the script bounds the body: more output
//     is not passed on, less is io.ErrUnexpectedEOF. For HEAD and for 204
//     and 304 answers the body is read and thrown away.
//   - The script's standard error goes to Stderr line by line. An exit
//     status other than 0 after a complete header does not change the
//     response, which may already be on its way; it is reported through
//     Stderr.
//
// # Request body
//
// CGI passes the body on standard input with its length in
// CONTENT_LENGTH, and programs read exactly that many bytes. A body of
// known length is streamed through a pipe by a goroutine of the exchange
// while the response is read (a script may answer before it has read its
// input, and both sides blocking on full pipes would deadlock). A script
// that stops reading early is not an error; a request body that breaks or
// ends short of its length kills the script, whose response then fails.
//
// A body of unknown length (chunked) has no CONTENT_LENGTH, so it is first
// copied to an unlinked temporary file in TempDir, which then is the
// script's standard input, as nginx and Apache buffer such bodies for
// their CGI-style backends. MaxBufferedBody bounds that copy: a larger body
// is answered 413, and a negative MaxBufferedBody answers such requests
// 411 Length Required instead of buffering. Reading a body to buffer it
// cannot be interrupted by the request's context; it ends when the
// client's connection does.
//
// # Lifetime
//
// The exchange ends when the response body is closed. Closed after the
// body was read to its end (the script closed its output, normally by
// exiting), Close waits for the script to exit, for at most a few seconds
// (then it is killed, as Apache's mod_cgi does); closed before, the script
// is killed at once. When the request's context ends first (the client is
// gone, or drover's request_timeout passed), the whole process group is
// killed with SIGKILL and a pending read of the header or the body fails
// at once with the context's error. Either way Close returns only after
// the process has been reaped, so that the pool's count of running
// scripts is exact, and no file descriptor of the exchange stays open. A
// process that left the script's process group (setsid) and kept the
// output pipe open holds the body open until the request's context ends.
//
// The body writer goroutine ends when the body is written, the script
// stops reading, or the exchange ends; the one exception is a read of the
// client's body that is still blocked, which ends with the client's
// connection, as in net/http/httputil.ReverseProxy.
package cgi
