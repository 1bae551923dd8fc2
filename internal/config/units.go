package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The unit types below decode from the strings people write ("15s",
// "512MiB", "150%") and also from the bare numbers TOML lets them write
// instead (0, 1048576, 150). encoding.TextUnmarshaler covers the strings;
// tomlValue covers the rest, because TOML integers never reach UnmarshalText.

// tomlValue is implemented by types that decode themselves from any TOML
// value (string, int64, float64, ...) rather than from text only.
type tomlValue interface {
	fromTOML(v any) error
}

// UnmarshalText parses a Go duration such as "15s" or "1h30m". "" is 0
// (off); a negative duration is an error because no setting means "before".
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, e.g. \"15s\", \"20m\", \"1h30m\"", string(b))
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d the way it is read, so settings shown by the admin
// API or written back to TOML read as "30s" rather than nanoseconds.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is d in Go duration syntax without zero tails: "20m", not "20m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (d *Duration) fromTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		if v == 0 {
			*d = 0
			return nil
		}
		// A bare number is ambiguous (seconds? nanoseconds?), so only 0,
		// which means the same in every unit, is accepted.
		return fmt.Errorf("a duration needs a unit: write \"%ds\" (or \"%dms\", \"%dm\")", v, v, v)
	default:
		return fmt.Errorf("expected a duration string such as \"15s\", got %s", describe(v))
	}
}

// sizeUnits maps a lower-cased unit to its multiplier. Single letters follow
// systemd and docker (1024-based); "KB"/"MB"/... are SI (1000-based);
// "KiB"/"MiB"/... are IEC (1024-based).
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kb":  1000,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mb":  1000 * 1000,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gb":  1000 * 1000 * 1000,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tb":  1000 * 1000 * 1000 * 1000,
	"tib": 1 << 40,
}

const sizeHint = `want bytes or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. "512MiB"`

// UnmarshalText parses "512MiB", "64MB", "1.5GiB", "10k" or a plain byte
// count "1048576". Units are case-insensitive. "" and "0" are 0 (off).
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "" {
		*s = 0
		return nil
	}
	if strings.HasPrefix(text, "-") {
		return fmt.Errorf("negative size %q", string(b))
	}
	end := 0
	for end < len(text) && (text[end] >= '0' && text[end] <= '9' || text[end] == '.') {
		end++
	}
	num, unit := text[:end], strings.ToLower(strings.TrimSpace(text[end:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return fmt.Errorf("invalid size %q: %s", string(b), sizeHint)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return fmt.Errorf("size %q is too large", string(b))
		}
		*s = Size(n * mult)
		return nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return fmt.Errorf("invalid size %q: %s", string(b), sizeHint)
	}
	f *= float64(mult)
	if f >= math.MaxInt64 {
		return fmt.Errorf("size %q is too large", string(b))
	}
	if f != math.Trunc(f) && mult == 1 {
		return fmt.Errorf("invalid size %q: a byte count must be whole", string(b))
	}
	*s = Size(f)
	return nil
}

// MarshalText writes s the way it is read; see String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String is s in the unit that writes it shortest while exact: "512MiB",
// "64MB", "1023B"; 0 is "0".
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	best, unit := int64(s), "B"
	for _, u := range []struct {
		name string
		mult int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	} {
		if q := int64(s) / u.mult; int64(s)%u.mult == 0 && q < best {
			best, unit = q, u.name
		}
	}
	return strconv.FormatInt(best, 10) + unit
}

func (s *Size) fromTOML(v any) error {
	switch v := v.(type) {
	case string:
		return s.UnmarshalText([]byte(v))
	case int64:
		if v < 0 {
			return fmt.Errorf("negative size %d", v)
		}
		*s = Size(v)
		return nil
	default:
		return fmt.Errorf("expected a size such as \"512MiB\" or a byte count, got %s", describe(v))
	}
}

// UnmarshalText parses "150%" or "150" (percent of one CPU). "" and "0" are
// 0 (off); a negative or non-finite percentage is an error.
func (p *Percent) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "" {
		*p = 0
		return nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(text, "%")), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("invalid percentage %q: want e.g. \"150%%\" (1.5 CPUs)", string(b))
	}
	return p.set(f, string(b))
}

func (p *Percent) set(f float64, written string) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("percentage must be a finite number")
	}
	if f < 0 {
		return fmt.Errorf("negative percentage %s: must be > 0, or 0 for off", written)
	}
	*p = Percent(f)
	return nil
}

// MarshalText writes p the way it is read; see String.
func (p Percent) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// String is p with a percent sign: "150%".
func (p Percent) String() string {
	return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"
}

func (p *Percent) fromTOML(v any) error {
	switch v := v.(type) {
	case string:
		return p.UnmarshalText([]byte(v))
	case int64:
		return p.set(float64(v), strconv.FormatInt(v, 10))
	case float64:
		return p.set(v, strconv.FormatFloat(v, 'g', -1, 64))
	default:
		return fmt.Errorf("expected a percentage such as \"150%%\", got %s", describe(v))
	}
}
