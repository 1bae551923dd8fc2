package evloop

import "time"

// SetHangupGrace sets the hang-up grace for a test, before it starts a
// Server; the returned func restores it, after the Server has ended.
func SetHangupGrace(d time.Duration) (restore func()) {
	old := hangupGrace
	hangupGrace = d
	return func() { hangupGrace = old }
}
