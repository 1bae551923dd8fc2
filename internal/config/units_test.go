package config

import (
	"strings"
	"testing"
	"time"
)

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want Size
		err  string
	}{
		{"", 0, ""},
		{"0", 0, ""},
		{int64(0), 0, ""},
		{int64(1048576), 1 << 20, ""},
		{"1048576", 1 << 20, ""},
		{"512MiB", 512 << 20, ""},
		{"512 mib", 512 << 20, ""},
		{"64MB", 64e6, ""},
		{"1GiB", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"100KiB", 100 << 10, ""},
		{"10k", 10 << 10, ""},
		{"2T", 2 << 40, ""},
		{"1TB", 1e12, ""},
		{"7B", 7, ""},
		{"-5MiB", 0, `negative size "-5MiB"`},
		{int64(-1), 0, "negative size -1"},
		{"lots", 0, `invalid size "lots"`},
		{"5 parsecs", 0, `invalid size "5 parsecs"`},
		{"1.5", 0, "must be whole"},
		{"1..5MiB", 0, "invalid size"},
		{"MiB", 0, "invalid size"},
		{"9999999999TiB", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{1.5, 0, "expected a size"},
		{true, 0, "expected a size"},
	} {
		var s Size
		err := s.fromTOML(tc.in)
		if !errMatches(err, tc.err) || s != tc.want {
			t.Errorf("Size(%#v) = %d, %v; want %d, %q", tc.in, s, err, tc.want, tc.err)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want time.Duration
		err  string
	}{
		{"", 0, ""},
		{"0", 0, ""},
		{int64(0), 0, ""},
		{"15s", 15 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{int64(15), 0, `write "15s"`},
		{"-5s", 0, `negative duration "-5s"`},
		{"5 s", 0, `invalid duration "5 s"`},
		{"soon", 0, `invalid duration "soon"`},
		{1.5, 0, "expected a duration string"},
	} {
		var d Duration
		err := d.fromTOML(tc.in)
		if !errMatches(err, tc.err) || d.D() != tc.want {
			t.Errorf("Duration(%#v) = %v, %v; want %v, %q", tc.in, d.D(), err, tc.want, tc.err)
		}
	}
}

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want Percent
		err  string
	}{
		{"", 0, ""},
		{"150%", 150, ""},
		{" 12.5 % ", 12.5, ""},
		{"50", 50, ""},
		{int64(200), 200, ""},
		{0.5, 0.5, ""},
		{int64(0), 0, ""},
		{"-50%", 0, "negative percentage -50%"},
		{int64(-1), 0, "negative percentage"},
		{"half", 0, `invalid percentage "half"`},
		{"NaN%", 0, "invalid percentage"},
		{false, 0, "expected a percentage"},
	} {
		var p Percent
		err := p.fromTOML(tc.in)
		if !errMatches(err, tc.err) || p != tc.want {
			t.Errorf("Percent(%#v) = %v, %v; want %v, %q", tc.in, p, err, tc.want, tc.err)
		}
	}
}

func TestUnitStrings(t *testing.T) {
	for _, tc := range []struct {
		v interface {
			String() string
			MarshalText() ([]byte, error)
		}
		want string
	}{
		{Duration(0), "0s"},
		{Duration(20 * time.Minute), "20m"},
		{Duration(time.Hour), "1h"},
		{Duration(90 * time.Minute), "1h30m"},
		{Duration(1500 * time.Millisecond), "1.5s"},
		{Size(0), "0"},
		{Size(512 << 20), "512MiB"},
		{Size(64e6), "64MB"},
		{Size(1000), "1KB"},
		{Size(1023), "1023B"},
		{Size(2 << 40), "2TiB"},
		{Percent(150), "150%"},
		{Percent(12.5), "12.5%"},
	} {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("%T(%v).String() = %q, want %q", tc.v, tc.v, got, tc.want)
		}
		if b, _ := tc.v.MarshalText(); string(b) != tc.want {
			t.Errorf("MarshalText = %q, want %q", b, tc.want)
		}
	}
	// What String writes, UnmarshalText reads back.
	for _, s := range []Size{0, 1, 1023, 1000, 64e6, 512 << 20, 3 << 29} {
		var back Size
		if err := back.UnmarshalText([]byte(s.String())); err != nil || back != s {
			t.Errorf("Size %d → %q → %d, %v", s, s.String(), back, err)
		}
	}
	for _, d := range []Duration{0, Duration(time.Hour), Duration(90 * time.Minute), Duration(1500 * time.Millisecond)} {
		var back Duration
		if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
			t.Errorf("Duration %v → %q → %v, %v", d.D(), d.String(), back.D(), err)
		}
	}
}

func errMatches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}
