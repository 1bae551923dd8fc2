package admin_test

import (
	"bytes"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/drover-pool/drover/internal/drovertest"
)

// scrape reads /metrics (no token needed) and returns the families.
func scrape(t *testing.T, c *client) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, h := c.with("").do("GET", "/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, h.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want ("k=v" pairs), or -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetrics drives requests, a crash, a queue, a recycle and a stop
// through a real drover and reads every metric of DESIGN.md back.
func TestMetrics(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	for range 5 {
		getBody(t, d.URL+"/pid")
	}
	if code, _, _ := drovertest.Get(t, d.URL+"/crash"); code != 502 {
		t.Errorf("/crash: %d, want 502", code)
	}
	m := scrape(t, c)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"drover_requests_total", []string{"pool=app", "code=200"}, 5},
		{"drover_requests_total", []string{"pool=app", "code=502"}, 1},
		{"drover_request_duration_seconds", []string{"pool=app"}, 6},
		{"drover_queue_wait_seconds", []string{"pool=app"}, 6},
		{"drover_queue_length", []string{"pool=app"}, 0},
		{"drover_pool_up", []string{"pool=app"}, 1},
		{"drover_instances", []string{"pool=app", "state=orphaned"}, 0},
	} {
		if got := value(m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := value(m, "drover_instance_failures_total", "pool=app", "reason=crash"); got < 1 {
		t.Errorf("crash failures = %v, want >= 1", got)
	}
	if got := value(m, "drover_instance_starts_total", "pool=app"); got < 2 {
		t.Errorf("starts = %v, want >= 2 (one before and one after the crash)", got)
	}
	if got := value(m, "drover_request_duration_seconds", "pool=app"); got != 6 {
		t.Errorf("duration count %v", got)
	}
	// Buckets for web latencies, from 1ms to 60s.
	h := m["drover_request_duration_seconds"].Metric[0].Histogram
	var bounds []float64
	for _, b := range h.Bucket {
		if !math.IsInf(b.GetUpperBound(), 1) {
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	if bounds[0] != .001 || bounds[len(bounds)-1] != 60 {
		t.Errorf("buckets %v", bounds)
	}

	// Two slow requests hold both instances; a third waits in the queue.
	done := make(chan struct{}, 3)
	for range 3 {
		go func() {
			if resp, err := http.Get(d.URL + "/sleep?d=1500ms"); err == nil {
				resp.Body.Close()
			}
			done <- struct{}{}
		}()
	}
	drovertest.Eventually(t, 5*time.Second, "queue length 1 and 2 ready instances", func() bool {
		m := scrape(t, c)
		return value(m, "drover_queue_length", "pool=app") == 1 && value(m, "drover_instances", "pool=app", "state=ready") == 2
	})
	for range 3 {
		<-done
	}
	if got := value(scrape(t, c), "drover_queue_wait_seconds", "pool=app"); got != 9 {
		t.Errorf("queue wait count %v, want 9", got)
	}

	c.json("POST", "/api/v1/pools/app/recycle", 200, nil)
	drovertest.Eventually(t, 15*time.Second, "two recycles counted with reason admin", func() bool {
		return value(scrape(t, c), "drover_recycles_total", "pool=app", "reason=admin") == 2
	})
	c.json("POST", "/api/v1/pools/app/stop", 200, nil)
	if got := value(scrape(t, c), "drover_pool_up", "pool=app"); got != 0 {
		t.Errorf("pool_up after stop = %v", got)
	}
}
