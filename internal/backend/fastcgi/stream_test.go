package fastcgi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// cannedTransport dials a fakeConn that plays data once.
func cannedTransport(data []byte) (*Transport, *[]string) {
	var mu sync.Mutex
	var lines []string
	dialed := false
	return &Transport{
		Dial: func(ctx context.Context) (net.Conn, error) {
			if dialed {
				return nil, errors.New("second dial")
			}
			dialed = true
			return newFakeConn(data), nil
		},
		Stderr: func(line string) {
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
		},
	}, &lines
}

func get(t *testing.T) *http.Request {
	return newRequest(t, "GET", "http://h/x", nil)
}

func TestResponseParsing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     []byte
		code     int
		status   string
		header   http.Header
		body     string
		stderr   []string
		bodyErr  error  // errors.Is
		rtErr    string // substring of RoundTrip's error
		rtErrIs  error
		readErrS string
	}{
		{
			name: "plain",
			data: cat(stdout("Content-Type: text/plain\r\n\r\nhello"), stdout(""), endRequest(0, 0)),
			code: 200, status: "200 OK", header: http.Header{"Content-Type": {"text/plain"}}, body: "hello",
		},
		{
			name: "status and LF lines",
			data: cat(stdout("Status: 404 Not Found\nX-A: 1\nx-a: 2\n\nmissing"), endRequest(0, 0)),
			code: 404, status: "404 Not Found", header: http.Header{"X-A": {"1", "2"}}, body: "missing",
		},
		{
			name: "status without reason",
			data: cat(stdout("Status: 503\r\n\r\n"), endRequest(0, 0)),
			code: 503, status: "503 Service Unavailable", header: http.Header{},
		},
		{
			name: "location without status",
			data: cat(stdout("Location: http://example.org/next\r\n\r\n"), endRequest(0, 0)),
			code: 302, status: "302 Found", header: http.Header{"Location": {"http://example.org/next"}},
		},
		{
			name: "local location without status",
			data: cat(stdout("Location: /next\r\n\r\n"), endRequest(0, 0)),
			code: 302, status: "302 Found", header: http.Header{"Location": {"/next"}},
		},
		{
			name: "location with status",
			data: cat(stdout("Status: 301 Moved Permanently\r\nLocation: /next\r\n\r\n"), endRequest(0, 0)),
			code: 301, status: "301 Moved Permanently", header: http.Header{"Location": {"/next"}},
		},
		{
			name: "header split across tiny records, stderr and padding between",
			data: cat(
				rec(typeStdout, 1, "Con", 5), stderrRec("warn"), rec(typeStdout, 1, "tent-Type: a/b\r", 1),
				rec(typeGetValuesResult, 0, "x", 7), stdout("\n"), rec(typeStderr, 1, "ing\nsecond\r\nthi", 3),
				stdout("\r\n"), stdout("bo"), stderrRec("rd"), stdout("dy"), stdout(""), endRequest(0, 0)),
			code: 200, status: "200 OK", header: http.Header{"Content-Type": {"a/b"}}, body: "body",
			stderr: []string{"warning", "second", "third"},
		},
		{
			name: "app status is not an error",
			data: cat(stdout("A: b\r\n\r\nx"), endRequest(255, 0)),
			code: 200, status: "200 OK", header: http.Header{"A": {"b"}}, body: "x",
		},
		{
			name: "closed after the header, before FCGI_END_REQUEST",
			data: cat(stdout("A: b\r\n\r\npartial")),
			code: 200, status: "200 OK", header: http.Header{"A": {"b"}}, body: "partial",
			bodyErr: io.ErrUnexpectedEOF,
		},
		{
			name: "closed in the middle of a record",
			data: cat(stdout("A: b\r\n\r\n"), stdout("12345")[:10]),
			code: 200, status: "200 OK", header: http.Header{"A": {"b"}}, body: "12",
			bodyErr: io.ErrUnexpectedEOF,
		},
		{
			name: "overloaded after the header",
			data: cat(stdout("A: b\r\n\r\n"), endRequest(0, statusOverloaded)),
			code: 200, status: "200 OK", header: http.Header{"A": {"b"}},
			bodyErr: ErrOverloaded,
		},
		{name: "empty stream", data: nil, rtErr: "read response header", rtErrIs: io.ErrUnexpectedEOF},
		{name: "closed inside the header", data: stdout("Content-Type: text/pl"), rtErr: "read response header", rtErrIs: io.ErrUnexpectedEOF},
		{name: "closed before the blank line", data: stdout("Content-Type: text/plain\r\n"), rtErrIs: io.ErrUnexpectedEOF},
		{name: "ended inside the header", data: cat(stdout("Content-Type: text/pl"), endRequest(0, 0)), rtErr: "in the middle of a header line"},
		{name: "ended before the blank line", data: cat(stdout("A: b\n"), endRequest(1, 0)), rtErr: "before the end of the header"},
		{name: "overloaded", data: endRequest(0, statusOverloaded), rtErrIs: ErrOverloaded},
		{name: "cannot multiplex", data: endRequest(0, statusCantMpxConn), rtErr: "FCGI_CANT_MPX_CONN"},
		{name: "unknown role", data: endRequest(0, statusUnknownRole), rtErr: "FCGI_UNKNOWN_ROLE"},
		{name: "bad version", data: []byte{2, 6, 0, 1, 0, 0, 0, 0}, rtErrIs: errProtocol},
		{name: "other request id", data: rec(typeStdout, 2, "A: b\r\n\r\n", 0), rtErrIs: errProtocol},
		{name: "unknown record type", data: rec(99, 1, "", 0), rtErrIs: errProtocol},
		{name: "short FCGI_END_REQUEST", data: rec(typeEndRequest, 1, "abc", 0), rtErrIs: errProtocol},
		{name: "header line without colon", data: cat(stdout("garbage\r\n\r\n"), endRequest(0, 0)), rtErrIs: errProtocol},
		{name: "header name with space", data: cat(stdout("Bad Name: x\r\n\r\n"), endRequest(0, 0)), rtErrIs: errProtocol},
		{name: "bad status", data: cat(stdout("Status: abc\r\n\r\n"), endRequest(0, 0)), rtErrIs: errProtocol},
		{name: "status below 100", data: cat(stdout("Status: 099\r\n\r\n"), endRequest(0, 0)), rtErrIs: errProtocol},
		{name: "NUL in value", data: cat(stdout("A: b\x00c\r\n\r\n"), endRequest(0, 0)), rtErrIs: errProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, lines := cannedTransport(tc.data)
			resp, err := tr.RoundTrip(get(t))
			if tc.rtErr != "" || tc.rtErrIs != nil {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("RoundTrip succeeded: %s", resp.Status)
				}
				if !strings.HasPrefix(err.Error(), "fastcgi: ") || !strings.Contains(err.Error(), tc.rtErr) ||
					(tc.rtErrIs != nil && !errors.Is(err, tc.rtErrIs)) {
					t.Fatalf("RoundTrip error %q, want one containing %q and wrapping %v", err, tc.rtErr, tc.rtErrIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code || resp.Status != tc.status {
				t.Errorf("status %d %q, want %d %q", resp.StatusCode, resp.Status, tc.code, tc.status)
			}
			if !equalHeader(resp.Header, tc.header) {
				t.Errorf("header %v, want %v", resp.Header, tc.header)
			}
			body, err := io.ReadAll(resp.Body)
			if string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if tc.bodyErr == nil && err != nil || tc.bodyErr != nil && !errors.Is(err, tc.bodyErr) {
				t.Errorf("body error %v, want %v", err, tc.bodyErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "fastcgi: read response body: ") {
				t.Errorf("body error %q does not say what failed", err)
			}
			if strings.Join(*lines, "|") != strings.Join(tc.stderr, "|") {
				t.Errorf("stderr %q, want %q", *lines, tc.stderr)
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

func TestHeaderLimit(t *testing.T) {
	big := strings.Repeat("x", maxContent)
	var data []byte
	data = append(data, stdout("X-Big: ")...)
	for range headerLimit/maxContent + 2 {
		data = append(data, stdout(big)...)
	}
	tr, _ := cannedTransport(cat(data, stdout("\r\n\r\n"), endRequest(0, 0)))
	_, err := tr.RoundTrip(get(t))
	if err == nil || !strings.Contains(err.Error(), "header larger than") {
		t.Fatalf("RoundTrip: %v, want a header size error", err)
	}

	// Just under the limit is fine, and the body is not limited.
	line := "X-Big: " + strings.Repeat("y", 1000) + "\r\n"
	data = nil
	for range (headerLimit - 2) / len(line) {
		data = append(data, stdout(line)...)
	}
	data = append(data, stdout("\r\n")...)
	for range 3 * headerLimit / maxContent {
		data = append(data, stdout(big)...)
	}
	tr, _ = cannedTransport(cat(data, endRequest(0, 0)))
	resp, err := tr.RoundTrip(get(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 3*headerLimit/maxContent*maxContent || len(resp.Header["X-Big"]) != (headerLimit-2)/len(line) {
		t.Fatalf("body %d bytes, %v; %d header lines", n, err, len(resp.Header["X-Big"]))
	}
}

func TestLongStderrLine(t *testing.T) {
	long := strings.Repeat("e", maxStderrLine+10)
	tr, lines := cannedTransport(cat(stderrRec(long), stdout("A: b\n\n"), stderrRec("tail"), endRequest(0, 0)))
	if _, body := do(t, tr, get(t)); body != "" {
		t.Errorf("body %q", body)
	}
	// The first maxStderrLine bytes are passed on as a line; the rest
	// of the line goes on in the next record.
	want := []string{long[:maxStderrLine], long[maxStderrLine:] + "tail"}
	if got := *lines; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("stderr lines %d, want 2: %.20q…", len(got), got)
	}
}

func TestContentLength(t *testing.T) {
	tr, _ := cannedTransport(cat(stdout("Content-Length: 5\r\n\r\nhello"), endRequest(0, 0)))
	resp, body := do(t, tr, get(t))
	if resp.ContentLength != 5 || body != "hello" {
		t.Errorf("ContentLength %d, body %q", resp.ContentLength, body)
	}
	tr, _ = cannedTransport(cat(stdout("Content-Length: -5\r\n\r\nhello"), endRequest(0, 0)))
	if resp, _ := do(t, tr, get(t)); resp.ContentLength != -1 {
		t.Errorf("ContentLength %d for a bad header, want -1", resp.ContentLength)
	}
}
