package events

import (
	"context"
	"testing"
	"time"
)

func TestRingKeepsTheNewest(t *testing.T) {
	l := New(nil, 3)
	for i := range 5 {
		l.Emit(Event{Kind: Spawn, PID: i})
	}
	got := l.Since(0)
	if len(got) != 3 || got[0].ID != 3 || got[2].ID != 5 || got[2].PID != 4 {
		t.Fatalf("Since(0) = %+v, want ids 3..5", got)
	}
	if got := l.Since(4); len(got) != 1 || got[0].ID != 5 {
		t.Fatalf("Since(4) = %+v", got)
	}
	if got := l.Since(5); len(got) != 0 {
		t.Fatalf("Since(last) = %+v, want none", got)
	}
}

func TestWaitWakesOnEmit(t *testing.T) {
	l := New(nil, 8)
	done := make(chan []Event)
	go func() { done <- l.Wait(context.Background(), 0) }()
	l.Emit(Event{Kind: Ready})
	if got := <-done; len(got) != 1 || got[0].Kind != Ready {
		t.Fatalf("Wait = %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got := l.Wait(ctx, l.Last()); got != nil {
		t.Fatalf("Wait with nothing new = %+v, want nil at the deadline", got)
	}
}

func TestSubscribe(t *testing.T) {
	l := New(nil, 8)
	var seen []string
	l.Subscribe(func(e Event) { seen = append(seen, e.Kind) })
	l.Emit(Event{Kind: Spawn})
	l.Emit(Event{Kind: Crash})
	if len(seen) != 2 || seen[1] != Crash {
		t.Fatalf("subscriber saw %v", seen)
	}
}
