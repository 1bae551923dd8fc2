package admin

import (
	"net/http"
	"slices"
	"time"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/gateway"
	"github.com/drover-pool/drover/internal/metrics"
	"github.com/drover-pool/drover/internal/pool"
)

// PoolView is a pool as the API shows it.
type PoolView struct {
	Name       string         `json:"name"`
	State      pool.State     `json:"state"`
	StopReason string         `json:"stop_reason,omitempty"`
	Waiting    int            `json:"waiting"`
	Settings   Settings       `json:"settings"`
	Counters   Counters       `json:"counters"`
	Instances  []InstanceView `json:"instances"`
}

// Settings summarise a pool's configuration: what an operator checks first.
type Settings struct {
	Kind                string          `json:"kind"`
	Start               string          `json:"start"`
	MinInstances        int             `json:"min_instances"`
	MaxInstances        int             `json:"max_instances"`
	InstanceConcurrency int             `json:"instance_concurrency"`
	QueueLength         int             `json:"queue_length"`
	MaxWait             config.Duration `json:"max_wait"`
	RequestTimeout      config.Duration `json:"request_timeout"`
	IdleTimeout         config.Duration `json:"idle_timeout"`
	StartupTimeout      config.Duration `json:"startup_timeout"`
}

// Counters are a pool's instance counts, request counters and recent
// rates (req_per_sec and p99_seconds over the last metrics.Window).
type Counters struct {
	// Instances counts instances by state.
	Instances map[string]int `json:"instances"`
	// Busy counts instances serving at least one request.
	Busy int `json:"busy"`
	// InFlight counts requests being served (not waiting).
	InFlight int `json:"in_flight"`
	metrics.Stats
}

// InstanceView is one instance. RSS and CPU cover its whole process group.
type InstanceView struct {
	ID            int       `json:"id"`
	PID           int       `json:"pid"`
	State         string    `json:"state"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Requests      uint64    `json:"requests"`
	InFlight      int       `json:"in_flight"`
	RSSBytes      int64     `json:"rss_bytes"`
	CPUSeconds    float64   `json:"cpu_seconds"`
}

// ActionResult answers a pool or service action.
type ActionResult struct {
	Action string `json:"action"`
	Pool   string `json:"pool,omitempty"`
	// Service is set for service actions.
	Service string `json:"service,omitempty"`
	// State is the pool's state after the action.
	State pool.State `json:"state,omitempty"`
}

func (h *Handler) pool(r *http.Request) (*pool.Pool, error) {
	name := r.PathValue("name")
	if p := h.o.Backend.Pools()[name]; p != nil {
		return p, nil
	}
	return nil, errorf(http.StatusNotFound, "no pool %q", name)
}

func (h *Handler) listPools(w http.ResponseWriter, r *http.Request) error {
	pools := h.o.Backend.Pools()
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	slices.Sort(names)
	list := make([]*pool.Pool, len(names))
	for i, n := range names {
		list[i] = pools[n]
	}
	return ok(w, h.views(list))
}

func (h *Handler) getPool(w http.ResponseWriter, r *http.Request) error {
	p, err := h.pool(r)
	if err != nil {
		return err
	}
	return ok(w, h.views([]*pool.Pool{p})[0])
}

// views describes pools, reading /proc once for all their instances.
func (h *Handler) views(pools []*pool.Pool) []PoolView {
	now := time.Now()
	out := make([]PoolView, 0, len(pools))
	var pgids []int
	for _, p := range pools {
		info := p.Info()
		cfg := p.Config()
		v := PoolView{
			Name:       info.Name,
			State:      info.State,
			StopReason: info.StopReason,
			Waiting:    info.Waiting,
			Settings: Settings{
				Kind: cfg.Kind, Start: cfg.Start,
				MinInstances: cfg.MinInstances, MaxInstances: cfg.MaxInstances,
				InstanceConcurrency: cfg.InstanceConcurrency, QueueLength: cfg.QueueLength,
				MaxWait: cfg.MaxWait, RequestTimeout: cfg.RequestTimeout,
				IdleTimeout: cfg.IdleTimeout, StartupTimeout: cfg.StartupTimeout,
			},
			Counters:  Counters{Instances: map[string]int{}},
			Instances: []InstanceView{},
		}
		if h.o.Metrics != nil {
			v.Counters.Stats = h.o.Metrics.Stats(info.Name)
		}
		for _, in := range info.Instances {
			v.Counters.Instances[in.State]++
			v.Counters.InFlight += in.InFlight
			if in.InFlight > 0 {
				v.Counters.Busy++
			}
			iv := InstanceView{
				ID: in.ID, PID: in.PID, State: in.State, Started: in.Started,
				Requests: in.Requests, InFlight: in.InFlight,
			}
			if !in.Started.IsZero() {
				iv.UptimeSeconds = float64(now.Sub(in.Started).Milliseconds()) / 1000
			}
			if in.PID > 0 {
				pgids = append(pgids, in.PID)
			}
			v.Instances = append(v.Instances, iv)
		}
		out = append(out, v)
	}
	if len(pgids) > 0 {
		usage := pool.Groups(pgids)
		for i := range out {
			for j := range out[i].Instances {
				iv := &out[i].Instances[j]
				u := usage[iv.PID]
				iv.RSSBytes, iv.CPUSeconds = u.RSS, float64(u.CPUTicks)/pool.ClockTicks
			}
		}
	}
	return out
}

func (h *Handler) poolRequests(w http.ResponseWriter, r *http.Request) error {
	p, err := h.pool(r)
	if err != nil {
		return err
	}
	return ok(w, sortRequests(h.o.Backend.Requests(p.Name())))
}

func (h *Handler) allRequests(w http.ResponseWriter, r *http.Request) error {
	return ok(w, sortRequests(h.o.Backend.Requests("")))
}

// sortRequests orders requests oldest first, the ones to look at.
func sortRequests(rs []gateway.RequestInfo) []gateway.RequestInfo {
	if rs == nil {
		rs = []gateway.RequestInfo{}
	}
	slices.SortFunc(rs, func(a, b gateway.RequestInfo) int { return a.Start.Compare(b.Start) })
	return rs
}

// poolActions are the POST /pools/{name}/ACTION verbs.
var poolActions = map[string]func(p *pool.Pool){
	"start":   (*pool.Pool).StartPool,
	"stop":    (*pool.Pool).StopPool,
	"recycle": func(p *pool.Pool) { p.Recycle("admin") },
}

func (h *Handler) poolAction(action string) apiFunc {
	do := poolActions[action]
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := h.pool(r)
		if err != nil {
			return err
		}
		do(p)
		state, _ := p.State()
		h.log.Info("admin action", "action", action, "pool", p.Name())
		return ok(w, ActionResult{Action: action, Pool: p.Name(), State: state})
	}
}
