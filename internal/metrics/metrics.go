// Package metrics exports drover's Prometheus metrics (the names are part
// of the contract in DESIGN.md) and keeps a short rolling window of request
// rates and latencies for the admin API's status view and the console.
//
// Three sources feed it, each where it is cheapest:
//
//   - requests: the gateway calls ObserveRequest on every finished request
//     (the hot path), which touches only pre-built, per-pool children and
//     atomics;
//   - lifecycle steps (starts, failures, recycles): an events.Log
//     subscription, so the pool package needs no metrics code;
//   - state (queue length, instances by state, pool up): read from the
//     pools at scrape time, so an idle drover does no metrics work at all,
//     and pools added or removed by a reload appear or vanish by themselves.
//
// The registry is private: drover's /metrics shows drover's metrics and
// nothing a library registered globally.
package metrics

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
)

// Source gives the pools in force at scrape time; *server.Server is one.
type Source interface {
	Pools() map[string]*pool.Pool
}

// DurationBuckets are the request-duration histogram's buckets: from 1ms,
// where a static or cached answer lands, to 60s, past which a request is
// a batch job whatever its route says.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// WaitBuckets are the queue-wait histogram's buckets: most requests do not
// wait at all (the first bucket), the rest wait for an instance to start
// or for a slot, up to max_wait.
var WaitBuckets = []float64{.0001, .001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// FailureKinds are the events counted by drover_instance_failures_total,
// with the event kind as the reason label.
var FailureKinds = []string{
	events.Crash, events.StartupFailure, events.SpawnFailure,
	events.PingFailure, events.TimeoutKill, events.CPUKill,
}

// InstanceStates are the states drover_instances reports, always all of
// them, so that a graph of one state does not have gaps when it is 0.
var InstanceStates = []string{"starting", "ready", "draining", "stopping", "killed", "orphaned"}

// Metrics is drover's metrics. It implements gateway.Observer.
type Metrics struct {
	src Source
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	queueWait *prometheus.HistogramVec
	starts    *prometheus.CounterVec
	failures  *prometheus.CounterVec
	recycles  *prometheus.CounterVec

	// pools maps a pool name to its cached children. It is copied on
	// write (a new pool is rare, a request is not), so ObserveRequest
	// reads it with one atomic load and a map lookup, without a lock.
	pools  atomic.Pointer[map[string]*poolObs]
	poolMu sync.Mutex // serialises the copy-on-write of pools

	now func() time.Time
}

// poolObs is one pool's pre-curried children and its rolling window.
type poolObs struct {
	name     string
	duration prometheus.Observer
	wait     prometheus.Observer
	// codes caches the drover_requests_total child per status code, so
	// that a request neither formats the code nor hashes label values.
	codes [600]atomic.Pointer[counter]

	served   atomic.Uint64
	starts   atomic.Uint64
	failures atomic.Uint64
	recycles atomic.Uint64
	win      window
}

type counter struct{ prometheus.Counter }

// New creates the metrics of the pools src gives, counting the lifecycle
// events of ev (nil: none).
func New(src Source, ev *events.Log) *Metrics {
	m := &Metrics{
		src: src,
		reg: prometheus.NewRegistry(),
		now: time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_requests_total",
			Help: "Requests routed to a pool and finished, by final HTTP status code (drover's own answers included).",
		}, []string{"pool", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_request_duration_seconds",
			Help:    "Time from a request's arrival at a pool to its end, queue wait included.",
			Buckets: DurationBuckets,
		}, []string{"pool"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_queue_wait_seconds",
			Help:    "Time a request waited for a slot.",
			Buckets: WaitBuckets,
		}, []string{"pool"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_instance_starts_total",
			Help: "Instances spawned.",
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_instance_failures_total",
			Help: "Instance failures by reason: crash, startup-failure, spawn-failure, ping-failure, timeout-kill, cpu-kill.",
		}, []string{"pool", "reason"}),
		recycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_recycles_total",
			Help: "Instances recycled, by reason (requests, memory, interval, schedule, watch, admin, ...).",
		}, []string{"pool", "reason"}),
	}
	empty := map[string]*poolObs{}
	m.pools.Store(&empty)
	m.reg.MustRegister(m.requests, m.duration, m.queueWait, m.starts, m.failures, m.recycles,
		&stateCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ev != nil {
		ev.Subscribe(m.event)
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the private registry, for tests that gather directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// obs returns the cached children of a pool, creating them the first time.
func (m *Metrics) obs(name string) *poolObs {
	if o := (*m.pools.Load())[name]; o != nil {
		return o
	}
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	cur := *m.pools.Load()
	if o := cur[name]; o != nil {
		return o
	}
	o := &poolObs{
		name:     name,
		duration: m.duration.WithLabelValues(name),
		wait:     m.queueWait.WithLabelValues(name),
	}
	next := make(map[string]*poolObs, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[name] = o
	m.pools.Store(&next)
	return o
}

// ObserveRequest counts one finished request. It is on the request path:
// after a pool's first request with a given status code it takes no lock
// and allocates nothing of its own.
func (m *Metrics) ObserveRequest(poolName string, code int, total, wait time.Duration) {
	o := m.obs(poolName)
	if code < 0 || code >= len(o.codes) {
		code = 0
	}
	c := o.codes[code].Load()
	if c == nil {
		c = &counter{m.requests.WithLabelValues(poolName, strconv.Itoa(code))}
		if !o.codes[code].CompareAndSwap(nil, c) {
			c = o.codes[code].Load()
		}
	}
	c.Inc()
	o.duration.Observe(total.Seconds())
	o.wait.Observe(wait.Seconds())
	o.served.Add(1)
	o.win.add(m.now(), total)
}

// event counts the lifecycle steps that have metrics. It runs in the
// emitting goroutine: it only increments counters.
func (m *Metrics) event(e events.Event) {
	if e.Pool == "" {
		return
	}
	switch e.Kind {
	case events.Spawn:
		m.starts.WithLabelValues(e.Pool).Inc()
		m.obs(e.Pool).starts.Add(1)
	case events.Crash, events.StartupFailure, events.SpawnFailure,
		events.PingFailure, events.TimeoutKill, events.CPUKill:
		m.failures.WithLabelValues(e.Pool, e.Kind).Inc()
		m.obs(e.Pool).failures.Add(1)
	case events.Recycle:
		// The pool emits one recycle event per replaced instance that
		// says how ("replaced by PID", or "stop first" without overlap);
		// a replacement that failed to start is logged too but did not
		// recycle anything.
		if strings.HasPrefix(e.Detail, "replaced by") || strings.HasPrefix(e.Detail, "stop first") {
			reason := e.Reason
			if reason == "" {
				reason = "unknown"
			}
			m.recycles.WithLabelValues(e.Pool, reason).Inc()
			m.obs(e.Pool).recycles.Add(1)
		}
	}
}

// Stats are a pool's counters since drover started and its recent rates.
type Stats struct {
	// Requests finished since drover started (by this pool name).
	Requests uint64 `json:"requests"`
	// ReqPerSec is the request rate over the last Window.
	ReqPerSec float64 `json:"req_per_sec"`
	// P99 is the 99th percentile of request durations over the last
	// Window, in seconds (the upper bound of a log bucket, so up to 25%
	// high); 0
	// when there were no requests.
	P99 float64 `json:"p99_seconds"`
	// Starts, Failures and Recycles count instance lifecycle steps.
	Starts   uint64 `json:"starts"`
	Failures uint64 `json:"failures"`
	Recycles uint64 `json:"recycles"`
}

// Stats returns a pool's counters and recent rates.
func (m *Metrics) Stats(poolName string) Stats {
	o := (*m.pools.Load())[poolName]
	if o == nil {
		return Stats{}
	}
	n, p99 := o.win.read(m.now())
	return Stats{
		Requests:  o.served.Load(),
		ReqPerSec: math.Round(float64(n)/Window.Seconds()*100) / 100,
		P99:       p99,
		Starts:    o.starts.Load(),
		Failures:  o.failures.Load(),
		Recycles:  o.recycles.Load(),
	}
}

// stateCollector reports what is read from the pools at scrape time.
type stateCollector struct{ m *Metrics }

var (
	queueDesc     = prometheus.NewDesc("drover_queue_length", "Requests waiting for a slot.", []string{"pool"}, nil)
	instancesDesc = prometheus.NewDesc("drover_instances", "Instances by state.", []string{"pool", "state"}, nil)
	upDesc        = prometheus.NewDesc("drover_pool_up", "1 when the pool is running, 0 when it is stopped (by an admin or rapid-fail protection).", []string{"pool"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDesc
	ch <- instancesDesc
	ch <- upDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m.src == nil {
		return
	}
	for name, p := range c.m.src.Pools() {
		info := p.Info()
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(info.Waiting), name)
		counts := make(map[string]int, len(InstanceStates))
		for _, in := range info.Instances {
			counts[in.State]++
		}
		for _, st := range InstanceStates {
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(counts[st]), name, st)
		}
		up := 0.0
		if info.State == pool.Running {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, name)
	}
}
