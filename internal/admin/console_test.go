package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
)

// chromiumPath is Debian's chromium, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// testout is the repository's testout/ directory (gitignored), where the
// browser test leaves its screenshots for a person to look at.
func testout(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser records what a page does that a test must check: console
// errors, uncaught exceptions, error log entries (CSP violations, failed
// loads) and every URL it requests.
type browser struct {
	mu       sync.Mutex
	errors   []string
	requests []string
}

func (b *browser) listen(ctx context.Context) {
	chromedp.ListenTarget(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.APITypeError || ev.Type == cdpruntime.APITypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.errors = append(b.errors, "console."+string(ev.Type)+": "+strings.Join(args, " "))
			}
		case *cdpruntime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.errors = append(b.errors, "exception: "+msg)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError {
				b.errors = append(b.errors, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, ev.Request.URL)
		case *page.EventJavascriptDialogOpening:
			// The console asks before recycling: accept, as an operator
			// would. Not from this goroutine, which delivers events.
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(true))
		}
	})
}

func (b *browser) report() (errs, reqs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors), slices.Clone(b.requests)
}

// eval evaluates a JavaScript expression and decodes its value into v.
func eval(ctx context.Context, expr string, v any) error {
	return chromedp.Run(ctx, chromedp.Evaluate(expr, v))
}

// until re-evaluates expr until it is true.
func until(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	drovertest.Eventually(t, timeout, what, func() bool {
		var ok bool
		return eval(ctx, expr, &ok) == nil && ok
	})
}

// TestConsoleInBrowser drives the web console in a real headless Chromium:
// it asks for the token, shows the pools with charts that move while
// requests flow, recycles a pool after a confirmation (its pids change),
// shows executing requests, and switches to Persian with a right-to-left
// layout; with no console error and no request to another host.
func TestConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console test needs Chromium at %s: install it with `apt-get install -y chromium` (CI's .ci/run does): %v", chromiumPath, err)
	}
	d, _ := startAdmin(t, adminConfig+`
[[route]]
path = "/other/"
pool = "other"
strip_prefix = true

[pool.other]
command = ["{{.App}}"]
`)
	adminURL := "http://" + d.Admin

	// Requests flow all along: two clients of slow-ish requests, bounded
	// by the test's duration.
	stop := make(chan struct{})
	var load sync.WaitGroup
	for range 2 {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get(d.URL + "/sleep?d=300ms"); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	defer func() { close(stop); load.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	b := &browser{}
	b.listen(tab)
	if err := chromedp.Run(tab, network.Enable(), cdplog.Enable(), cdpruntime.Enable()); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}

	// The console asks for the token once.
	err := chromedp.Run(tab,
		chromedp.Navigate(adminURL+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", testToken, chromedp.ByID),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`article.card[data-pool="app"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`article.card[data-pool="other"]`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("login and overview: %v", err)
	}
	var stored string
	if eval(tab, `sessionStorage.getItem('drover.token')`, &stored); stored != testToken {
		t.Errorf("token in sessionStorage: %q", stored)
	}

	// The requests-per-second chart of pool app changes while requests
	// flow, and shows a rate above 0.
	const rpsPath = `document.querySelector('article.card[data-pool="app"] svg.chart-rps path.line').getAttribute('d')`
	var first, second string
	until(t, tab, 10*time.Second, "the req/s chart has points", rpsPath+`.split('L').length > 2`)
	eval(tab, rpsPath, &first)
	until(t, tab, 10*time.Second, "the req/s chart changes", rpsPath+` !== `+jsString(first))
	eval(tab, rpsPath, &second)
	until(t, tab, 15*time.Second, "the req/s figure is above 0",
		`parseFloat(document.querySelectorAll('article.card[data-pool="app"] .stat .v')[2].textContent) > 0`)
	until(t, tab, 10*time.Second, "the instances chart has a busy area",
		`document.querySelector('article.card[data-pool="app"] svg.chart-instances path.area.busy').getAttribute('d').length > 10`)
	if err := screenshot(tab, filepath.Join(testout(t), "console-overview.png")); err != nil {
		t.Error(err)
	}

	// The pool page lists instances and executing requests; recycle
	// (confirmed) replaces every instance.
	if err := chromedp.Run(tab,
		chromedp.Click(`article.card[data-pool="app"] a.name`, chromedp.ByQuery),
		chromedp.WaitVisible(`#instances`, chromedp.ByID),
	); err != nil {
		t.Fatalf("pool page: %v", err)
	}
	const pidsJS = `Array.from(document.querySelectorAll('#instances td.pid')).map(e => parseInt(e.textContent, 10)).filter(n => n > 0)`
	var before []int
	drovertest.Eventually(t, 10*time.Second, "the pool page shows instance pids", func() bool {
		return eval(tab, pidsJS, &before) == nil && len(before) > 0
	})
	until(t, tab, 10*time.Second, "an executing request is listed",
		`Array.from(document.querySelectorAll('#requests td.url')).some(e => e.textContent.startsWith('/sleep'))`)
	if err := chromedp.Run(tab, chromedp.Click(`button[data-action="recycle"][data-pool="app"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("recycle: %v", err)
	}
	var after []int
	drovertest.Eventually(t, 20*time.Second, fmt.Sprintf("every pid of %v is replaced", before), func() bool {
		if eval(tab, pidsJS, &after) != nil || len(after) == 0 {
			return false
		}
		for _, p := range after {
			if slices.Contains(before, p) {
				return false
			}
		}
		return true
	})
	drovertest.Eventually(t, 10*time.Second, "a recycle event with reason admin", func() bool {
		return len(d.Events().Find(func(e eventT) bool { return e.Kind == "recycle" && e.Reason == "admin" })) > 0
	})

	// Persian: right to left, translated.
	if err := eval(tab, `(() => { const s = document.getElementById('lang'); s.value = 'fa'; s.dispatchEvent(new Event('change')); return true })()`, nil); err != nil {
		t.Fatal(err)
	}
	until(t, tab, 5*time.Second, "dir=rtl", `document.documentElement.dir === 'rtl' && document.documentElement.lang === 'fa'`)
	var dir, nav string
	eval(tab, `getComputedStyle(document.body).direction`, &dir)
	eval(tab, `document.querySelector('[data-nav=pools]').textContent`, &nav)
	if dir != "rtl" || nav != "استخرها" {
		t.Errorf("Persian: direction %q, nav %q", dir, nav)
	}
	until(t, tab, 5*time.Second, "the pool page is re-rendered in Persian", `document.querySelector('#instances th:nth-child(3)').textContent === 'وضعیت'`)
	time.Sleep(2 * time.Second) // a poll or two, so the charts have drawn
	if err := screenshot(tab, filepath.Join(testout(t), "console-pool-fa.png")); err != nil {
		t.Error(err)
	}
	if err := chromedp.Run(tab, chromedp.Navigate(adminURL+"/#/events"), chromedp.WaitVisible(`#events`, chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	until(t, tab, 10*time.Second, "the events view lists the recycle", `Array.from(document.querySelectorAll('#events td.ev-kind')).some(e => e.textContent === 'recycle')`)
	if err := screenshot(tab, filepath.Join(testout(t), "console-events-fa.png")); err != nil {
		t.Error(err)
	}

	errs, reqs := b.report()
	for _, e := range errs {
		t.Errorf("browser: %s", e)
	}
	for _, r := range reqs {
		u, err := url.Parse(r)
		if err != nil || u.Host != d.Admin {
			t.Errorf("request to another host than the admin address: %s", r)
		}
	}
	if len(reqs) < 5 {
		t.Errorf("only %d requests seen: is the network listener working?", len(reqs))
	}
}

func screenshot(ctx context.Context, path string) error {
	// The viewport, not FullScreenshot: a full-page capture of a
	// right-to-left page is offset by Chromium's content origin.
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

type eventT = events.Event
