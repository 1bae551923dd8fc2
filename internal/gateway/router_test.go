package gateway

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTableMatch(t *testing.T) {
	h := http.NotFoundHandler()
	table := NewTable([]Route{
		{Host: "", Path: "/", Target: "any-root", Handler: h},
		{Host: "*", Path: "/api", Target: "any-api", Handler: h},
		{Host: "tiles.example.org", Path: "/", Target: "tiles-root", Handler: h},
		{Host: "tiles.example.org", Path: "/wms", Target: "tiles-wms", Handler: h},
		{Host: "*.example.org", Path: "/", Target: "wild", Handler: h},
		{Host: "*.maps.example.org", Path: "/", Target: "wild-maps", Handler: h},
		{Host: "only.example.com", Path: "/x/", Target: "only-x", Handler: h},
	})
	cases := []struct{ host, path, want string }{
		{"tiles.example.org", "/", "tiles-root"},
		{"TILES.example.org:8080", "/wms", "tiles-wms"},
		{"tiles.example.org.", "/wms/1/2", "tiles-wms"},
		{"tiles.example.org", "/wmsx", "tiles-root"},
		{"a.example.org", "/anything", "wild"},
		{"a.b.example.org", "/", "wild"},
		{"x.maps.example.org", "/", "wild-maps"},
		{"example.org", "/", "any-root"},
		{"other.net", "/api", "any-api"},
		{"other.net", "/api/v1", "any-api"},
		{"other.net", "/apix", "any-root"},
		{"only.example.com", "/x/y", "only-x"},
		{"only.example.com", "/y", "any-root"}, // falls through to any-host
		{"[::1]:8080", "/", "any-root"},
	}
	for _, c := range cases {
		r := table.Match(c.host, c.path)
		got := "<nil>"
		if r != nil {
			got = r.Target
		}
		if got != c.want {
			t.Errorf("Match(%q, %q) = %s, want %s", c.host, c.path, got, c.want)
		}
	}
	if r := NewTable([]Route{{Host: "a", Path: "/", Handler: h}}).Match("b", "/"); r != nil {
		t.Errorf("no route should match, got %s", r.Target)
	}
}

func TestStripPrefix(t *testing.T) {
	for _, c := range []struct{ prefix, path, want string }{
		{"/app", "/app/pid", "/pid"},
		{"/app", "/app", "/"},
		{"/app/", "/app/x", "/x"},
		{"/", "/x", "/x"},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		stripPrefix(r, c.prefix)
		if r.URL.Path != c.want {
			t.Errorf("strip %q from %q = %q, want %q", c.prefix, c.path, r.URL.Path, c.want)
		}
	}
}

func TestStaticConfined(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("home"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "a.txt"), []byte("a"), 0o644)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link"))
	os.Symlink(outside, filepath.Join(dir, "linkdir"))

	st, err := NewStatic(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	serve := func(h http.Handler, target string) (int, string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = target
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, body := serve(st, "/"); code != 200 || body != "home" {
		t.Errorf("/: %d %q", code, body)
	}
	if code, body := serve(st, "/sub/a.txt"); code != 200 || body != "a" {
		t.Errorf("/sub/a.txt: %d %q", code, body)
	}
	for _, p := range []string{"/../" + filepath.Base(outside) + "/secret", "/link", "/linkdir/secret", "/sub/"} {
		if code, body := serve(st, p); code == 200 || strings.Contains(body, "secret") {
			t.Errorf("%s: %d %q, want it refused", p, code, body)
		}
	}
	listing, err := NewStatic(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer listing.Close()
	if code, body := serve(listing, "/sub/"); code != 200 || !strings.Contains(body, "a.txt") {
		t.Errorf("listing /sub/: %d %q", code, body)
	}
}

func TestAnswer(t *testing.T) {
	w := httptest.NewRecorder()
	answer(w, 503, reasonQueueFull, 1)
	if w.Code != 503 || w.Header().Get("Drover-Error") != "queue-full" || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("answer: %d %v", w.Code, w.Header())
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.ORG":      "example.org",
		"example.org:8080": "example.org",
		"example.org.":     "example.org",
		"example.org.:80":  "example.org",
		"127.0.0.1:18082":  "127.0.0.1",
		"[::1]:8080":       "::1",
		"[::1]":            "::1",
		"::1":              "::1",
		"fe80::1":          "fe80::1",
		"host:":            "host",
		"host:http":        "host:http",
		"":                 "",
	} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { normalizeHost("tiles.example.org:8080") }); n != 0 {
		t.Errorf("normalizeHost allocates %v times", n)
	}
}
