package metrics

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Window is how far back Stats' request rate and p99 look: long enough to
// smooth a bursty second, short enough that the console shows a change
// within a few polls.
const Window = 10 * time.Second

const (
	winSlots = int64(Window/time.Second) + 1 // one per second, plus the one being overwritten
	nBuckets = 128                           // log buckets up to over an hour
)

// window is a ring of per-second slots, each with a request count and a
// log-bucketed latency histogram. Writers use atomics only. When a slot is
// reused for a new second, a concurrent writer may add to it just before
// it is zeroed and be lost: this is a display aid, not an account, and
// the Prometheus counters are exact.
type window struct {
	s [winSlots]slot
}

type slot struct {
	sec atomic.Int64
	n   atomic.Uint64
	b   [nBuckets]atomic.Uint32
}

func (w *window) add(now time.Time, d time.Duration) {
	sec := now.Unix()
	sl := &w.s[sec%winSlots]
	if old := sl.sec.Load(); old != sec && sl.sec.CompareAndSwap(old, sec) {
		sl.n.Store(0)
		for i := range sl.b {
			sl.b[i].Store(0)
		}
	}
	sl.n.Add(1)
	sl.b[bucketOf(d)].Add(1)
}

// read returns the count of requests in the window ending now and their
// 99th percentile duration in seconds.
func (w *window) read(now time.Time) (n uint64, p99 float64) {
	sec := now.Unix()
	var hist [nBuckets]uint64
	for i := range w.s {
		sl := &w.s[i]
		if s := sl.sec.Load(); s <= sec-int64(Window/time.Second) || s > sec {
			continue
		}
		n += sl.n.Load()
		for j := range hist {
			hist[j] += uint64(sl.b[j].Load())
		}
	}
	if n == 0 {
		return 0, 0
	}
	var total uint64
	for _, c := range hist {
		total += c
	}
	target := (total*99 + 99) / 100
	var cum uint64
	for i, c := range hist {
		cum += c
		if cum >= target && c > 0 {
			return n, bucketUpper(i).Seconds()
		}
	}
	return n, bucketUpper(nBuckets - 1).Seconds()
}

// bucketOf maps a duration to a log bucket with four sub-buckets per power
// of two of microseconds (buckets 0-3 are 0-3µs), with integer operations
// only, as it runs for every request.
func bucketOf(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < 4 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // floor(log2 us) >= 2
	sub := int(us>>(e-2)) & 3
	return min(4*(e-1)+sub, nBuckets-1)
}

// bucketUpper is the exclusive upper bound of bucket i.
func bucketUpper(i int) time.Duration {
	if i < 4 {
		return time.Duration(i+1) * time.Microsecond
	}
	e := i/4 + 1
	sub := i % 4
	return time.Duration(uint64(5+sub)<<(e-2)) * time.Microsecond
}
