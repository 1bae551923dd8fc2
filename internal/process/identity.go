package process

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// CleanEnv is the minimal environment every worker and service gets: nothing of
// drover's own environment leaks in (no secrets, no admin token) except the
// locale and time zone.
func CleanEnv(home, userName string, extra map[string]string) []string {
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

// Credential resolves user and group names to a Credential with the
// user's supplementary groups, so that the worker never keeps a stray root
// group. It also returns the user's home directory.
func Credential(userName, groupName string) (*syscall.Credential, string, error) {
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

// SetIdentity gives spec the identity of user and group (when set) and the
// clean environment with extra added. A spec with a lesser identity also
// gets no_new_privs, so that the worker cannot win privileges back
// through a setuid program. Pools and services both start this way.
func SetIdentity(spec *Spec, userName, groupName string, extra map[string]string) error {
	home := "/"
	if userName != "" || groupName != "" {
		cred, h, err := Credential(userName, groupName)
		if err != nil {
			return err
		}
		spec.Credential = cred
		home = h
		spec.Limits.NoNewPrivs = true
	} else if h, err := os.UserHomeDir(); err == nil {
		home = h
	}
	spec.Env = CleanEnv(home, userName, extra)
	return nil
}
