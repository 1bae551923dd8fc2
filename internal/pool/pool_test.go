package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/pool"
)

func TestMain(m *testing.M) { drovertest.Main(m) }

// warmPool returns a started pool of the sample app with one ready
// instance of conc slots.
func warmPool(tb testing.TB, conc int) *pool.Pool {
	tb.Helper()
	cfg, err := config.Parse("test.toml", []byte(`
[pool.p]
command = ["`+drovertest.SampleApp(tb)+`"]
start = "always"
min_instances = 1
max_instances = 1
instance_concurrency = `+itoa(conc)+`
`))
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	p, err := pool.New(pool.Options{Config: cfg.Pools["p"], Kind: &backend.HTTP{SocketDir: dir, Prefix: "p"}})
	if err != nil {
		tb.Fatal(err)
	}
	p.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	drovertest.Eventually(tb, 10*time.Second, "instance ready", func() bool { return len(p.PIDs("ready")) == 1 })
	return p
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestAcquireReleaseAllocs: the uncontended hot path allocates nothing.
func TestAcquireReleaseAllocs(t *testing.T) {
	p := warmPool(t, 1)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		inst, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(inst)
	})
	if allocs != 0 {
		t.Fatalf("uncontended Acquire+Release allocates %.1f times, want 0", allocs)
	}
}

// TestShutdownFailsWaiters: requests queued when the pool shuts down get
// ErrStopped instead of waiting out max_wait.
func TestShutdownFailsWaiters(t *testing.T) {
	p := warmPool(t, 1)
	inst, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background())
		errc <- err
	}()
	drovertest.Eventually(t, 5*time.Second, "waiter queued", func() bool { return p.Info().Waiting == 1 })
	go p.Release(inst)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Shutdown(ctx)
	if err := <-errc; err != nil && err != pool.ErrStopped {
		t.Fatalf("waiter got %v", err)
	}
	if _, err := p.Acquire(context.Background()); err != pool.ErrStopped {
		t.Fatalf("Acquire after Shutdown: %v, want ErrStopped", err)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	p := warmPool(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		inst, err := p.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Release(inst)
	}
}

// BenchmarkAcquireReleaseParallel has every goroutine contend for 8 slots:
// waiters queue and get slots handed over directly.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	p := warmPool(b, 8)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			inst, err := p.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			p.Release(inst)
		}
	})
}
