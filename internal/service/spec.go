package service

import (
	"log/slog"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/process"
)

// This file builds a service's process.Spec the way internal/pool builds an
// instance's: clean minimal environment, identity from user/group, limits.
// The environment and identity come from package process, shared with
// pools, so that the two never disagree on what a worker inherits.

// baseSpec is the template for every start of one service.
func baseSpec(name string, cfg *config.Service, log *slog.Logger) (process.Spec, error) {
	spec := process.Spec{
		Args: append([]string(nil), cfg.Command...),
		Dir:  cfg.Dir,
		Output: func(stream, line string) {
			log.Info(line, "service", name, "stream", stream)
		},
	}
	// Per-process limits are applied by the process package's helper
	// stage before the program's first instruction (the binary must call
	// process.Init).
	spec.Limits = process.Limits{
		AddressSpace: int64(cfg.Limits.AddressSpace),
		OpenFiles:    cfg.Limits.OpenFiles,
		Nice:         cfg.Limits.Nice,
		CPUs:         cfg.Limits.CPUAffinity,
	}
	if err := process.SetIdentity(&spec, cfg.User, cfg.Group, cfg.Env); err != nil {
		return spec, err
	}
	return spec, nil
}
