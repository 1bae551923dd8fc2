package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration file. It carries the position of
// the offending key so that an operator can jump straight to it: a config
// error that only says "invalid duration" in a 300-line file is not useful.
type Error struct {
	File string
	// Line and Col are 1-based; Col counts bytes. Both are 0 when the
	// problem cannot be tied to a place in the file.
	Line, Col int
	// Key is the dotted path of the key, as in "pool.tiles.limits.memory"
	// or "route[2].pool". Empty for TOML syntax errors.
	Key string
	Msg string
}

// Error formats e as "file:line:col: key: msg", the form compilers use, so
// editors and terminals can link it. Parts that are unknown are left out.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file, in file order.
// Parse reports them all at once so that fixing a config is one round trip,
// not one per mistake.
type Errors []*Error

// Error returns one line per problem.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
