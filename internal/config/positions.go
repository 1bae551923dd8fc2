package config

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is where a key was written in the file.
type position struct{ line, col int }

// Pos returns where key was written: its own line and column when the file
// sets it, else those of the nearest enclosing table or array that the file
// writes (so a missing "pool.tiles.command" points at [pool.tiles]), else
// 0, 0. Keys are dotted paths as in Error.Key: "server.listen",
// "pool.tiles.limits.memory", "route[2].pool",
// "pool.tiles.recycle.schedule[1]"; a name that is not a bare TOML key is
// quoted, as in `pool."tiles.v2".kind`.
//
// Other packages use it to tie problems found later (a failed bind, a
// missing executable) to the line that caused them.
func (c *Config) Pos(key string) (line, col int) {
	if c == nil {
		return 0, 0
	}
	p := lookupPos(c.pos, key)
	return p.line, p.col
}

// Errorf returns an Error about key, placed at Pos(key) in c.File.
func (c *Config) Errorf(key, format string, args ...any) *Error {
	line, col := c.Pos(key)
	e := &Error{Line: line, Col: col, Key: key, Msg: fmt.Sprintf(format, args...)}
	if c != nil {
		e.File = c.File
	}
	return e
}

// has reports whether the file itself sets key (defaults do not count).
func (c *Config) has(key string) bool {
	_, ok := c.pos[key]
	return ok
}

// lookupPos finds key or its nearest ancestor in pos.
func lookupPos(pos map[string]position, key string) position {
	for key != "" {
		if p, ok := pos[key]; ok {
			return p
		}
		key = parentKey(key)
	}
	return position{}
}

// parentKey strips the last ".name" or "[i]" from key, minding quoted
// components that may contain either.
func parentKey(key string) string {
	cut := 0
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '"':
			// Skip the quoted component; it was written by strconv.Quote.
			for i++; i < len(key) && key[i] != '"'; i++ {
				if key[i] == '\\' {
					i++
				}
			}
		case '.', '[':
			cut = i
		}
	}
	return key[:cut]
}

// joinKey appends one key component to a dotted path, quoting it when it
// is not a bare TOML key so that the path stays unambiguous.
func joinKey(prefix, name string) string {
	if !isBareKey(name) {
		name = strconv.Quote(name)
	}
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func indexKey(prefix string, i int) string {
	return prefix + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// scanPositions walks the TOML syntax tree and records, for every key the
// document writes, the position of the key (for tables: of the opening
// bracket). go-toml's decoder reports positions only for its own errors, so
// this map is what lets validation errors point at a line too.
//
// Paths are built as the decoder sees them: a key inside the third
// [[route]] is "route[2].pool"; an element of an inline array is
// "recycle.schedule[1]". Tables created implicitly (by [a.b.c] or by the
// dotted key a.b = 1) are recorded at the first place that creates them.
//
// data must already have parsed without error; scanPositions returns what it
// has collected if it meets a syntax error anyway.
func scanPositions(data []byte) map[string]position {
	s := posScanner{data: data, lines: newLineIndex(data), pos: map[string]position{}, arrays: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = s.header(n)
		case unstable.KeyValue:
			s.keyValue(table, n)
		}
	}
	return s.pos
}

type posScanner struct {
	data  []byte
	lines lineIndex
	pos   map[string]position
	// arrays maps the path of each array of tables to the index of its
	// last element, which is where later [a.b] headers below it point.
	arrays map[string]int
}

func (s *posScanner) at(offset int) position { return s.lines.at(offset) }

// lineIndex turns byte offsets into line and column numbers.
type lineIndex []int // offsets where lines 2, 3, ... start

func newLineIndex(data []byte) lineIndex {
	var li lineIndex
	for i, c := range data {
		if c == '\n' {
			li = append(li, i+1)
		}
	}
	return li
}

func (li lineIndex) at(offset int) position {
	// The number of line starts at or before offset is the number of
	// lines before this one.
	n := sort.Search(len(li), func(i int) bool { return li[i] > offset })
	start := 0
	if n > 0 {
		start = li[n-1]
	}
	return position{line: n + 1, col: offset - start + 1}
}

// exprOffset is where a top-level expression starts: its key, or the
// opening bracket of a table header; -1 if it has no key.
func exprOffset(data []byte, n *unstable.Node) int {
	if n.Kind != unstable.KeyValue && n.Kind != unstable.Table && n.Kind != unstable.ArrayTable {
		return -1
	}
	_, offset := keyParts(n.Key())
	if offset < 0 || n.Kind == unstable.KeyValue {
		return offset
	}
	for offset > 0 && (data[offset-1] == ' ' || data[offset-1] == '\t') {
		offset--
	}
	for i := 0; i < 2 && offset > 0 && data[offset-1] == '['; i++ {
		offset--
	}
	return offset
}

// locateFailure finds where decoding data fails when go-toml reports an
// error without a position (a key or table defined twice). Such an error
// depends only on the expressions before it, so the failing expression is
// the first one whose prefix of the document fails to decode: a binary
// search over expressions.
func locateFailure(data []byte, decode func([]byte) error) (position, bool) {
	var starts []int
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		if off := exprOffset(data, p.Expression()); off >= 0 {
			starts = append(starts, off)
		}
	}
	k := sort.Search(len(starts), func(k int) bool {
		end := len(data)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		return decode(data[:end]) != nil
	})
	if k == len(starts) {
		return position{}, false
	}
	return newLineIndex(data).at(starts[k]), true
}

func (s *posScanner) setOnce(key string, p position) {
	if _, ok := s.pos[key]; !ok {
		s.pos[key] = p
	}
}

// keyParts returns the components of a (possibly dotted) key and the offset
// of its first component.
func keyParts(it unstable.Iterator) ([]string, int) {
	var parts []string
	offset := -1
	for it.Next() {
		n := it.Node()
		if offset < 0 {
			offset = int(n.Raw.Offset)
		}
		parts = append(parts, string(n.Data))
	}
	return parts, offset
}

// header records a [table] or [[array]] header and returns the path of the
// table that the following key/values belong to.
func (s *posScanner) header(n *unstable.Node) string {
	parts, _ := keyParts(n.Key())
	offset := exprOffset(s.data, n) // the opening bracket
	if offset < 0 {
		return ""
	}
	p := s.at(offset)
	path := ""
	for i, part := range parts {
		path = joinKey(path, part)
		last := i == len(parts)-1
		switch {
		case last && n.Kind == unstable.ArrayTable:
			idx := 0
			if j, ok := s.arrays[path]; ok {
				idx = j + 1
			}
			s.arrays[path] = idx
			s.setOnce(path, p)
			path = indexKey(path, idx)
			s.pos[path] = p
		case last:
			// An explicit header beats an earlier implicit creation.
			s.pos[path] = p
		default:
			if j, ok := s.arrays[path]; ok {
				path = indexKey(path, j)
			}
			s.setOnce(path, p)
		}
	}
	return path
}

func (s *posScanner) keyValue(table string, n *unstable.Node) {
	parts, offset := keyParts(n.Key())
	if offset < 0 {
		return
	}
	p := s.at(offset)
	path := table
	for _, part := range parts {
		path = joinKey(path, part)
		s.setOnce(path, p)
	}
	s.value(path, n.Value())
}

func (s *posScanner) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			elem := indexKey(path, i)
			if c.Raw.Length > 0 {
				s.setOnce(elem, s.at(int(c.Raw.Offset)))
			}
			s.value(elem, c)
			i++
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				s.keyValue(path, c)
			}
		}
	}
}
