package config

import (
	"reflect"
	"slices"
)

// Changes is what a reload must do to go from one Config to the next. Hot
// reload uses it to touch only what changed: a pool whose settings are
// identical keeps its instances and queue; a changed one is recycled.
// Every name list is sorted.
type Changes struct {
	// Pools by name.
	Added, Removed, Changed, Unchanged []string

	// Services by name.
	ServicesAdded, ServicesRemoved, ServicesChanged, ServicesUnchanged []string

	// RoutesChanged is true when the route table differs in any way,
	// including order (which decides nothing today, but is cheap to redo).
	RoutesChanged bool

	// Front-end listen addresses to open and to close.
	ListenersAdded, ListenersRemoved []string

	// ServerChanged is true when any [server] setting other than listen
	// differs (admin address, TLS files, logging, timeouts, ...).
	ServerChanged bool
}

// Diff compares two configurations; old may be nil (first load), in which
// case everything in next is added. A pool or service counts as changed
// when any of its settings differs.
func Diff(old, next *Config) Changes {
	if old == nil {
		old = &Config{}
	}
	if next == nil {
		next = &Config{}
	}
	var ch Changes
	ch.Added, ch.Removed, ch.Changed, ch.Unchanged = diffNamed(old.Pools, next.Pools)
	ch.ServicesAdded, ch.ServicesRemoved, ch.ServicesChanged, ch.ServicesUnchanged = diffNamed(old.Services, next.Services)
	ch.RoutesChanged = !reflect.DeepEqual(old.Routes, next.Routes)
	ch.ListenersAdded = missingFrom(next.Server.Listen, old.Server.Listen)
	ch.ListenersRemoved = missingFrom(old.Server.Listen, next.Server.Listen)

	a, b := old.Server, next.Server
	a.Listen, b.Listen = nil, nil
	ch.ServerChanged = !reflect.DeepEqual(a, b)
	return ch
}

func diffNamed[T any](old, next map[string]T) (added, removed, changed, unchanged []string) {
	for _, name := range sortedNames(next) {
		prev, ok := old[name]
		switch {
		case !ok:
			added = append(added, name)
		case reflect.DeepEqual(prev, next[name]):
			unchanged = append(unchanged, name)
		default:
			changed = append(changed, name)
		}
	}
	for _, name := range sortedNames(old) {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	return added, removed, changed, unchanged
}

// missingFrom returns the entries of a that are not in b, sorted.
func missingFrom(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
