package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/drover-pool/drover/internal/admin"
	"github.com/drover-pool/drover/internal/gateway"
)

// cmdStatus prints one line per pool, and with a POOL its instances too.
func cmdStatus(c *clientCmd) error {
	name, err := c.optionalPool()
	if err != nil {
		return err
	}
	var pools []admin.PoolView
	var b []byte
	if name == "" {
		b, err = c.api.call(c.ctx, "GET", "/pools", &pools)
	} else {
		var p admin.PoolView
		b, err = c.api.call(c.ctx, "GET", "/pools/"+url.PathEscape(name), &p)
		pools = []admin.PoolView{p}
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.raw(b)
	}
	printStatus(c.stdout, pools, name != "")
	return nil
}

// printStatus writes the status table; with detail, each pool's
// instances follow.
func printStatus(w io.Writer, pools []admin.PoolView, detail bool) {
	if len(pools) == 0 {
		fmt.Fprintln(w, "no pools")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tSTATE\tBUSY/READY/STARTING\tQUEUE\tREQ/S\tP99")
	for _, p := range pools {
		state := string(p.State)
		if p.StopReason != "" {
			state += " (" + p.StopReason + ")"
		}
		in := p.Counters.Instances
		fmt.Fprintf(tw, "%s\t%s\t%d/%d/%d\t%d\t%s\t%s\n", p.Name, state,
			p.Counters.Busy, in["ready"], in["starting"], p.Waiting,
			strconv.FormatFloat(p.Counters.ReqPerSec, 'f', 1, 64), seconds(p.Counters.P99))
	}
	tw.Flush()
	if !detail {
		return
	}
	for _, p := range pools {
		fmt.Fprintln(w)
		if len(p.Instances) == 0 {
			fmt.Fprintf(w, "pool %s has no instances\n", p.Name)
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPID\tSTATE\tUPTIME\tREQUESTS\tIN FLIGHT\tRSS\tCPU")
		for _, i := range p.Instances {
			pid := "-"
			if i.PID != 0 {
				pid = strconv.Itoa(i.PID)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%.2fs\n", i.ID, pid, i.State,
				uptime(time.Duration(i.UptimeSeconds*float64(time.Second))), i.Requests, i.InFlight,
				mib(i.RSSBytes), i.CPUSeconds)
		}
		tw.Flush()
	}
}

// seconds formats a latency compactly: "-" for none, "12ms", "1.25s".
func seconds(s float64) string {
	switch {
	case s <= 0:
		return "-"
	case s < 1:
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(s, 'f', 2, 64) + "s"
}

// uptime formats a duration to the second, as "3d04h", "2h05m", "4m07s".
func uptime(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s >= 86400:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

// cmdRequests prints the requests in flight, oldest first.
func cmdRequests(c *clientCmd) error {
	name, err := c.optionalPool()
	if err != nil {
		return err
	}
	path := "/requests"
	if name != "" {
		path = "/pools/" + url.PathEscape(name) + "/requests"
	}
	var rs []gateway.RequestInfo
	b, err := c.api.call(c.ctx, "GET", path, &rs)
	if err != nil {
		return err
	}
	if c.json {
		return c.raw(b)
	}
	if len(rs) == 0 {
		fmt.Fprintln(c.stdout, "no requests in flight")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tPID\tELAPSED\tMETHOD\tURL\tCLIENT")
	for _, r := range rs {
		pid := "waiting"
		if r.PID != 0 {
			pid = strconv.Itoa(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Pool, pid, r.Elapsed.Round(100*time.Millisecond), r.Method, r.URL, r.Client)
	}
	return tw.Flush()
}
