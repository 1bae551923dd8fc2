// Command drover is an application pool server: it routes HTTP requests to
// pools of worker processes that it starts, bounds, queues for, supervises
// and recycles. See docs/ for the configuration and the admin API.
package main

import (
	"fmt"
	"os"

	"github.com/drover-pool/drover/internal/process"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: drover <command> [flags]

commands:
  serve -c FILE     run drover with the configuration FILE
  check -c FILE     validate FILE and exit (1 on errors)
  version           print the version

client commands (they talk to a running drover's admin API):
  status [POOL]             pools: state, instances busy/ready/starting, queue, req/s, p99
  requests [POOL]           requests being served or waiting, oldest first
  recycle|start|stop POOL   recycle (overlapped), start or stop a pool
  reload                    re-read the configuration; errors are printed, the old one stays
  events [-f]               lifecycle events; -f follows them until Ctrl-C
  service start|stop NAME [--wait D]
                            start (waiting up to D until running) or stop a service

client flags (before or after the arguments):
  -c FILE        read server.admin and the token from drover's configuration
  --admin ADDR   admin API address, host:port or unix:/path ($DROVER_ADMIN)
  --json         print JSON
The token is $DROVER_ADMIN_TOKEN, else the config's admin_token_file, else the
one drover generated in its runtime_dir/admin.token.
`

func main() {
	// A worker being started with limits passes through here first.
	process.Init()
	os.Exit(run(os.Args[1:]))
}

// run dispatches a subcommand and returns the exit code: 0 ok, 1 error,
// 2 usage.
func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "check":
		return check(args[1:])
	case "version", "--version", "-v":
		fmt.Println("drover", version)
		return 0
	case "status", "requests", "recycle", "start", "stop", "reload", "events", "service":
		return client(args[0], args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "drover: unknown command %q\n\n%s", args[0], usage)
	return 2
}
