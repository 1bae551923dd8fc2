package server

import (
	"github.com/drover-pool/drover/internal/cgroup"
	"github.com/drover-pool/drover/internal/config"
)

// CgroupLimits are the parts of a pool's limits that need a cgroup:
// memory, pids, and cpu when its action is to throttle (kill and log are
// measured without one).
func CgroupLimits(l config.Limits) cgroup.Limits {
	out := cgroup.Limits{Memory: int64(l.Memory), Pids: l.Pids}
	if l.CPU > 0 && l.CPUAction == "throttle" {
		out.CPUPercent = float64(l.CPU)
	}
	return out
}

// cgroupFor creates the pool's group in drover's delegated hierarchy.
func (s *Server) cgroupFor(pool string, l cgroup.Limits) (*cgroup.Group, error) {
	h := s.opts.Cgroups
	if h == nil {
		var err error
		if h, err = cgroup.Detect(); err != nil {
			return nil, err
		}
	}
	return h.NewGroup(pool, l)
}

// Preflight checks what config validation cannot know from the file
// alone: that this machine can give the pools and services their cgroup
// limits. drover
// check and serve both run it; each error names the file, line and key.
func Preflight(cfg *config.Config, h *cgroup.Hierarchy) error {
	var errs config.Errors
	limits := map[string]config.Limits{}
	for name, pc := range cfg.Pools {
		limits["pool."+name] = pc.Limits
	}
	for name, sc := range cfg.Services {
		limits["service."+name] = sc.Limits
	}
	for table, pl := range limits {
		l := CgroupLimits(pl)
		if len(l.Controllers()) == 0 {
			continue
		}
		err := error(nil)
		if h == nil {
			h, err = cgroup.Detect()
		}
		if err == nil {
			err = h.Check(l)
		}
		if err != nil {
			key := table + ".limits"
			switch {
			case pl.Memory > 0:
				key += ".memory"
			case pl.Pids > 0:
				key += ".pids"
			default:
				key += ".cpu"
			}
			errs = append(errs, cfg.Errorf(key, "%v", err))
			h = nil
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
