package pool

import "time"

// InstanceInfo describes one instance at a moment.
type InstanceInfo struct {
	ID       int       `json:"id"`
	PID      int       `json:"pid"`
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Requests uint64    `json:"requests"`
	InFlight int       `json:"in_flight"`
}

// Info describes a pool at a moment.
type Info struct {
	Name       string         `json:"name"`
	State      State          `json:"state"`
	StopReason string         `json:"stop_reason,omitempty"` // "admin", "rapid-fail"
	Waiting    int            `json:"waiting"`
	Instances  []InstanceInfo `json:"instances"`
}

// Info returns a snapshot of the pool.
func (p *Pool) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	info := Info{Name: p.name, State: p.state, StopReason: p.stopReason, Waiting: p.waiters.n}
	for _, inst := range p.instances {
		info.Instances = append(info.Instances, InstanceInfo{
			ID:       inst.id,
			PID:      inst.pid,
			State:    inst.state.String(),
			Started:  inst.started,
			Requests: inst.served,
			InFlight: inst.inFlight,
		})
	}
	return info
}

// PIDs returns the pids of the instances in the given states (all
// instances when none are given). Instances not yet spawned have pid 0 and
// are left out.
func (p *Pool) PIDs(states ...string) []int {
	var out []int
	for _, in := range p.Info().Instances {
		if in.PID == 0 {
			continue
		}
		if len(states) == 0 {
			out = append(out, in.PID)
			continue
		}
		for _, s := range states {
			if in.State == s {
				out = append(out, in.PID)
				break
			}
		}
	}
	return out
}
