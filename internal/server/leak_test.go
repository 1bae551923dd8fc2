package server_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/server"
)

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestNoLeaks runs a whole server life (requests, a request timeout that
// kills an instance, a client that gives up, a reload, a recycle) and then
// shuts down: no goroutine, file descriptor or process of drover's may
// remain.
func TestNoLeaks(t *testing.T) {
	drovertest.SampleApp(t) // build before counting
	file, v := drovertest.WriteConfig(t, header+`
[pool.app]
command = ["{{.App}}"]
request_timeout = "300ms"
idle_timeout = "200ms"
instance_concurrency = 2
`)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	ignore := goleak.IgnoreCurrent()

	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	url := "http://" + v.Listen
	for _, path := range []string{"/pid", "/hang", "/download?size=100000", "/pid"} {
		resp, err := client.Get(url + path)
		if err == nil {
			resp.Body.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/sleep?d=5s", nil)
	client.Do(req)
	cancel()
	b, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(b), "instance_concurrency = 2", "instance_concurrency = 3", 1)), 0o644)
	if err := srv.Reload(file); err != nil {
		t.Fatal(err)
	}
	srv.Pool("app").Recycle("manual")
	resp, err := client.Get(url + "/pid")
	if err == nil {
		resp.Body.Close()
	}
	client.CloseIdleConnections()

	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	// process.spawner owns the thread that forks; it lives as long as
	// drover by design.
	if err := goleak.Find(ignore, goleak.IgnoreTopFunction("github.com/drover-pool/drover/internal/process.spawner")); err != nil {
		t.Error(err)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d file descriptors open after shutdown, %d before", after, before)
	}
	if n := sampleProcs(); n != 0 {
		t.Errorf("%d sample workers remain", n)
	}
}
