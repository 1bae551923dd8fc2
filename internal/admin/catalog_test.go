package admin

import (
	"encoding/json"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"testing"
)

// TestCatalogs: every message catalog has exactly the keys of the English
// one, no empty text, the same {placeholders}; and every key the console
// uses exists.
func TestCatalogs(t *testing.T) {
	load := func(lang string) map[string]string {
		b, err := fs.ReadFile(consoleFS, "console/i18n/"+lang+".json")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s.json: %v", lang, err)
		}
		return m
	}
	en := load("en")
	ph := regexp.MustCompile(`\{\w+\}`)
	for _, lang := range []string{"id", "fa", "zh"} {
		m := load(lang)
		if got, want := slices.Sorted(maps.Keys(m)), slices.Sorted(maps.Keys(en)); !slices.Equal(got, want) {
			t.Errorf("%s.json keys differ from en.json:\n%v\n%v", lang, got, want)
		}
		for k, v := range m {
			if v == "" {
				t.Errorf("%s.json: %s is empty", lang, k)
			}
			if a, b := slices.Sorted(slices.Values(ph.FindAllString(v, -1))), slices.Sorted(slices.Values(ph.FindAllString(en[k], -1))); !slices.Equal(a, b) {
				t.Errorf("%s.json: %s has placeholders %v, English %v", lang, k, a, b)
			}
		}
	}
	used := map[string]bool{}
	for _, f := range []string{"console/app.js", "console/index.html"} {
		b, _ := fs.ReadFile(consoleFS, f)
		for _, m := range regexp.MustCompile(`(?:\bt\('|data-i18n=")([\w.-]+)['"]`).FindAllSubmatch(b, -1) {
			if k := string(m[1]); k[len(k)-1] != '.' { // not a prefix of a built key
				used[k] = true
			}
		}
	}
	// Keys built at run time: their families.
	for _, prefix := range []string{"chart.", "legend.", "action.", "confirm.", "state."} {
		for _, k := range map[string][]string{
			"chart.":   {"rps", "queue", "instances"},
			"legend.":  {"busy", "idle", "starting", "other"},
			"action.":  {"recycle", "stop", "start"},
			"confirm.": {"recycle", "stop", "start"},
			"state.":   {"running", "stopped", "starting", "ready", "draining", "stopping", "killed", "orphaned"},
		}[prefix] {
			used[prefix+k] = true
		}
	}
	used["reason.admin"], used["reason.rapid-fail"] = true, true
	if len(used) < 40 {
		t.Fatalf("found only %d keys in the console: is the pattern right?", len(used))
	}
	for k := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("the console uses %q, which en.json lacks", k)
		}
	}
}
