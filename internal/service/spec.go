package service

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/process"
)

// This file builds a service's process.Spec the way internal/pool builds an
// instance's: clean minimal environment, identity from user/group, limits.
//
// NOTE: cleanEnv and credential are copies of the unexported helpers in
// internal/pool/pool.go (pool.cleanEnv, pool.credential). They should move
// to one shared, exported place (internal/process is the natural one) so
// that pools and services can never disagree on what a worker inherits;
// until then, keep the two copies in step.

// baseSpec is the template for every start of one service.
func baseSpec(name string, cfg *config.Service, log *slog.Logger) (process.Spec, error) {
	spec := process.Spec{
		Args: append([]string(nil), cfg.Command...),
		Dir:  cfg.Dir,
		Output: func(stream, line string) {
			log.Info(line, "service", name, "stream", stream)
		},
	}
	home := "/"
	var userName string
	if cfg.User != "" || cfg.Group != "" {
		cred, h, err := credential(cfg.User, cfg.Group)
		if err != nil {
			return spec, err
		}
		spec.Credential = cred
		home, userName = h, cfg.User
	} else if h, err := os.UserHomeDir(); err == nil {
		home = h
	}
	spec.Env = cleanEnv(home, userName, cfg.Env)
	// Cgroup limits (memory, cpu, pids) are not applied here yet, exactly
	// as for pools; per-process limits go to the process package, which
	// refuses to start rather than run a process without them.
	spec.Limits = process.Limits{
		AddressSpace: int64(cfg.Limits.AddressSpace),
		OpenFiles:    cfg.Limits.OpenFiles,
		Nice:         cfg.Limits.Nice,
		CPUs:         cfg.Limits.CPUAffinity,
	}
	return spec, nil
}

// cleanEnv is the minimal environment every service gets: nothing of
// drover's own environment leaks in (no secrets, no admin token) except the
// locale and time zone. Copy of pool.cleanEnv.
func cleanEnv(home, userName string, extra map[string]string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
	}
	if userName != "" {
		env = append(env, "USER="+userName, "LOGNAME="+userName)
	}
	for _, k := range []string{"LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// credential resolves user and group names to a Credential with the
// user's supplementary groups, so that the service never keeps a stray
// root group. Copy of pool.credential.
func credential(userName, groupName string) (*syscall.Credential, string, error) {
	cred := &syscall.Credential{}
	home := "/"
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return nil, "", fmt.Errorf("user %q: %w", userName, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
		home = u.HomeDir
		gids, err := u.GroupIds()
		if err != nil {
			return nil, "", fmt.Errorf("user %q: groups: %w", userName, err)
		}
		for _, g := range gids {
			n, err := strconv.ParseUint(g, 10, 32)
			if err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return nil, "", fmt.Errorf("group %q: %w", groupName, err)
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(gid)
		if userName == "" {
			cred.Uid = uint32(os.Geteuid())
		}
	}
	if cred.Groups == nil {
		// An empty, non-nil list clears drover's own supplementary groups.
		cred.Groups = []uint32{cred.Gid}
	}
	return cred, home, nil
}
