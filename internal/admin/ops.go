package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
)

// maxWait bounds ?wait= so that a typo cannot hold a connection for days.
const maxWait = 10 * time.Minute

// durationParam reads an optional duration query parameter.
func durationParam(r *http.Request, key string) (time.Duration, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errorf(http.StatusBadRequest, "%s=%q: want a duration such as 5s", key, s)
	}
	return min(d, maxWait), nil
}

func (h *Handler) listServices(w http.ResponseWriter, r *http.Request) error {
	if h.o.Services == nil {
		return ok(w, []any{})
	}
	return ok(w, h.o.Services.List())
}

// serviceError maps the Services sentinel errors to statuses.
func serviceError(err error) error {
	for _, m := range []struct {
		err  error
		code int
	}{
		{ErrNotFound, http.StatusNotFound},
		{ErrWaitTimeout, http.StatusRequestTimeout},
		{ErrFailed, http.StatusConflict},
		{ErrUnavailable, http.StatusServiceUnavailable},
		{context.Canceled, http.StatusServiceUnavailable},
	} {
		if errors.Is(err, m.err) {
			return &httpError{Code: m.code, Msg: err.Error()}
		}
	}
	return err
}

func (h *Handler) startService(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	wait, err := durationParam(r, "wait")
	if err != nil {
		return err
	}
	if h.o.Services == nil {
		return errorf(http.StatusNotFound, "no service %q", name)
	}
	if err := h.o.Services.Start(r.Context(), name, wait); err != nil {
		return serviceError(err)
	}
	h.log.Info("admin action", "action", "start", "service", name)
	return ok(w, ActionResult{Action: "start", Service: name})
}

func (h *Handler) stopService(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if h.o.Services == nil {
		return errorf(http.StatusNotFound, "no service %q", name)
	}
	if err := h.o.Services.Stop(r.Context(), name); err != nil {
		return serviceError(err)
	}
	h.log.Info("admin action", "action", "stop", "service", name)
	return ok(w, ActionResult{Action: "stop", Service: name})
}

// ReloadResult answers a successful POST /reload.
type ReloadResult struct {
	Reloaded bool `json:"reloaded"`
	// Summary says which pools were added, removed, changed and kept.
	Summary string `json:"summary"`
}

func (h *Handler) reload(w http.ResponseWriter, r *http.Request) error {
	ev := h.o.Backend.Events()
	before := ev.Last()
	if err := h.o.Backend.Reload(); err != nil {
		he := &httpError{Code: http.StatusBadRequest, Msg: "reload refused; the old configuration stays in force"}
		var list config.Errors
		var one *config.Error
		switch {
		case errors.As(err, &list):
			he.Code = http.StatusUnprocessableEntity
			for _, e := range list {
				he.Errors = append(he.Errors, e.Error())
			}
		case errors.As(err, &one):
			he.Code = http.StatusUnprocessableEntity
			he.Errors = []string{one.Error()}
		default:
			he.Errors = strings.Split(err.Error(), "\n")
		}
		return he
	}
	res := ReloadResult{Reloaded: true}
	for _, e := range ev.Since(before) {
		if e.Kind == events.Reload {
			res.Summary = e.Detail
		}
	}
	h.log.Info("admin action", "action", "reload")
	return ok(w, res)
}

// events answers GET /events: the retained events after ?since=ID, of one
// ?pool= if given; with ?wait=D it waits up to D for the first one (long
// poll); with Accept: text/event-stream it streams them as Server-Sent
// Events until the client goes away.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "since=%q: want an event id", s)
		}
		since = n
	}
	wait, err := durationParam(r, "wait")
	if err != nil {
		return err
	}
	poolName := q.Get("pool")
	match := func(e events.Event) bool { return poolName == "" || e.Pool == poolName }
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil {
			since = id
		}
		return h.stream(w, r, since, match)
	}
	log := h.o.Backend.Events()
	out := filter(log.Since(since), match)
	if len(out) == 0 && wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		for len(out) == 0 && ctx.Err() == nil {
			evs := log.Wait(ctx, since)
			if len(evs) > 0 {
				since = evs[len(evs)-1].ID
			}
			out = filter(evs, match)
		}
	}
	return ok(w, out)
}

func filter(evs []events.Event, match func(events.Event) bool) []events.Event {
	out := []events.Event{}
	for _, e := range evs {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// keepAlive is how often an idle event stream sends a comment, so that
// proxies and the client notice a dead connection.
var keepAlive = 15 * time.Second

func (h *Handler) stream(w http.ResponseWriter, r *http.Request, since uint64, match func(events.Event) bool) error {
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte(": drover events\n\n")); err != nil {
		return nil
	}
	_ = rc.Flush()
	log := h.o.Backend.Events()
	for r.Context().Err() == nil {
		ctx, cancel := context.WithTimeout(r.Context(), keepAlive)
		evs := log.Wait(ctx, since)
		cancel()
		var b []byte
		if len(evs) == 0 {
			b = []byte(": keep-alive\n\n")
		}
		for _, e := range evs {
			since = e.ID
			if !match(e) {
				continue
			}
			data, _ := jsonMarshal(e)
			b = append(b, "id: "+strconv.FormatUint(e.ID, 10)+"\ndata: "...)
			b = append(b, data...)
			b = append(b, "\n\n"...)
		}
		if len(b) == 0 {
			continue
		}
		if _, err := w.Write(b); err != nil {
			return nil // the client went away: nothing to answer
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
	return nil
}
