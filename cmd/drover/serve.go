package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/server"
)

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	file := fs.String("c", "drover.toml", "configuration file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := load(*file)
	if !ok {
		return 1
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "drover:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "drover:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if err := writeHeapProfile(*memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "drover:", err)
			}
		}()
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// drover's live heap is small and made of short-lived request
		// garbage: collecting at 4x rather than 2x the live heap halves
		// GC work on the request path for a few MiB of memory.
		debug.SetGCPercent(400)
	}
	logger := newLogger(cfg.Server.LogFormat, os.Stderr)
	slog.SetDefault(logger)
	srv, err := server.New(cfg, server.Options{Logger: logger})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		logger.Error("cannot start", "err", err)
		_ = srv.Shutdown(context.Background())
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := srv.Reload(*file); err != nil {
				logger.Error("reload refused; the old configuration stays", "err", err)
			}
			continue
		}
		logger.Info("stopping", "signal", sig.String(), "shutdown_timeout", cfg.Server.ShutdownTimeout.D())
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("shutdown", "err", err)
	}
	logger.Info("stopped")
	return 0
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// printConfigErrors prints one error per line, each with file:line:col.
func printConfigErrors(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func check(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	file := fs.String("c", "drover.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := load(*file)
	if !ok {
		return 1
	}
	fmt.Printf("%s: ok: %d listeners, %d routes, %d pools, %d services\n",
		*file, len(cfg.Server.Listen), len(cfg.Routes), len(cfg.Pools), len(cfg.Services))
	return 0
}

// load reads and validates a configuration and checks it against this
// machine, printing every error with its file:line:column.
func load(file string) (*config.Config, bool) {
	cfg, err := config.Load(file)
	if err == nil {
		err = server.Preflight(cfg, nil)
	}
	if err != nil {
		printConfigErrors(os.Stderr, err)
		return nil, false
	}
	return cfg, true
}

// writeHeapProfile writes the allocations made since start (the
// "allocs" profile) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
