package admin

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

// consoleFS is the web console: plain HTML, CSS and JavaScript with no
// third-party code, fonts or CDN, so that it works on an air-gapped
// machine and its CSP can forbid every other origin.
//
//go:embed console
var consoleFS embed.FS

// consoleHandler serves the console: GET / is its page, /console/... its
// files. Everything else under / is 404.
func consoleHandler(tokenRequired bool) http.Handler {
	sub, _ := fs.Sub(consoleFS, "console")
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	// config.json tells the page whether to ask for a token before its
	// first API call: asking the API and getting a 401 would do too, but
	// a browser logs every 401 as an error in its console.
	conf, _ := json.Marshal(map[string]bool{"token_required": tokenRequired})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// A new drover binary may bring a new console: revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		switch {
		case r.URL.Path == "/":
			http.ServeFileFS(w, r, sub, "index.html")
		case r.URL.Path == "/console/config.json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(conf)
		case len(r.URL.Path) > len("/console/") && r.URL.Path[:len("/console/")] == "/console/":
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
