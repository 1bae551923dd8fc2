package fastcgi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Record types, roles, flags and protocol statuses of FastCGI 1.0.
const (
	typeBeginRequest    = 1
	typeAbortRequest    = 2
	typeEndRequest      = 3
	typeParams          = 4
	typeStdin           = 5
	typeStdout          = 6
	typeStderr          = 7
	typeData            = 8
	typeGetValues       = 9
	typeGetValuesResult = 10
	typeUnknownType     = 11

	roleResponder = 1
	flagKeepConn  = 1

	statusRequestComplete = 0
	statusCantMpxConn     = 1
	statusOverloaded      = 2
	statusUnknownRole     = 3

	version    = 1
	headerLen  = 8
	requestID  = 1 // one request per connection at a time
	maxContent = 65535
	// maxStdin is the content size of full FCGI_STDIN records: the largest
	// multiple of 8 that fits, so full records need no padding.
	maxStdin = maxContent &^ 7
)

// ErrOverloaded is returned when the application ends a request with
// FCGI_OVERLOADED: it is alive but refuses work, so the request can be
// retried elsewhere.
// Like the other errors of this package it is wrapped: test with errors.Is.
var ErrOverloaded = errors.New("application overloaded (FCGI_OVERLOADED)")

// errProtocol marks a byte stream that is not valid FastCGI.
var errProtocol = errors.New("malformed FastCGI stream")

// protocolStatusError turns a non-complete FCGI_END_REQUEST status into an
// error.
func protocolStatusError(status byte) error {
	switch status {
	case statusOverloaded:
		return ErrOverloaded
	case statusCantMpxConn:
		return errors.New("application cannot multiplex connections (FCGI_CANT_MPX_CONN)")
	case statusUnknownRole:
		return errors.New("application does not implement the responder role (FCGI_UNKNOWN_ROLE)")
	default:
		return fmt.Errorf("request ended with protocol status %d", status)
	}
}

// putHeader writes a record header for content of length n into b[:8] and
// returns the padding that should follow the content to align the record to
// 8 bytes, as the specification recommends.
func putHeader(b []byte, typ byte, id uint16, n int) (padding int) {
	padding = -n & 7
	b[0] = version
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:], id)
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	b[6] = byte(padding)
	b[7] = 0
	return padding
}

// appendRecord appends one whole record (header, content, padding).
func appendRecord(b []byte, typ byte, id uint16, content []byte) []byte {
	var h [headerLen]byte
	pad := putHeader(h[:], typ, id, len(content))
	b = append(b, h[:]...)
	b = append(b, content...)
	var zero [8]byte
	return append(b, zero[:pad]...)
}

// appendBeginRequest appends an FCGI_BEGIN_REQUEST record for the responder
// role.
func appendBeginRequest(b []byte, keepConn bool) []byte {
	var body [8]byte
	binary.BigEndian.PutUint16(body[0:], roleResponder)
	if keepConn {
		body[2] = flagKeepConn
	}
	return appendRecord(b, typeBeginRequest, requestID, body[:])
}

// appendPairLen appends a name-value pair length: one byte below 128, else
// four bytes with the top bit set.
func appendPairLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// pairSize is the encoded size of one name-value pair.
func pairSize(name, value string) int {
	n := len(name) + len(value) + 2
	if len(name) >= 128 {
		n += 3
	}
	if len(value) >= 128 {
		n += 3
	}
	return n
}

func appendPair(b []byte, name, value string) []byte {
	b = appendPairLen(b, len(name))
	b = appendPairLen(b, len(value))
	b = append(b, name...)
	return append(b, value...)
}

// appendPairRecords appends name-value pairs as records of type typ,
// followed by the empty record that ends the stream. A pair never straddles
// two records: the specification allows it, but php-cgi decodes each
// FCGI_PARAMS record on its own and drops the connection otherwise.
func appendPairRecords(b []byte, typ byte, id uint16, pairs []param) ([]byte, error) {
	start := -1 // offset of the open record's header in b
	for _, p := range pairs {
		size := pairSize(p.name, p.value)
		if size > maxContent {
			return b, fmt.Errorf("fastcgi: param %s is too long (%d bytes, a record holds %d)", p.name, size, maxContent)
		}
		if start >= 0 && len(b)-start-headerLen+size > maxContent {
			b = closeRecord(b, start)
			start = -1
		}
		if start < 0 {
			start = len(b)
			b = append(b, make([]byte, headerLen)...)
			b[start+1] = typ
			binary.BigEndian.PutUint16(b[start+2:], id)
		}
		b = appendPair(b, p.name, p.value)
	}
	if start >= 0 {
		b = closeRecord(b, start)
	}
	return appendRecord(b, typ, id, nil), nil
}

// closeRecord fills in the header of the record that starts at b[start:]
// now that its content is complete, and pads it.
func closeRecord(b []byte, start int) []byte {
	n := len(b) - start - headerLen
	pad := putHeader(b[start:], b[start+1], binary.BigEndian.Uint16(b[start+2:]), n)
	var zero [8]byte
	return append(b, zero[:pad]...)
}
