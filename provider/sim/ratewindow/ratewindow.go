// Package ratewindow counts calls in the fixed windows by which the
// simulator's dialects (docusignfake, dropboxsignfake) limit their APIs as
// the real providers do, and gives a window's reset as the providers'
// X-RateLimit-Reset headers declare it.
package ratewindow

import "time"

// Window counts calls in a fixed window that starts at a multiple of its
// length since the Unix epoch, so every dialect's windows line up with
// the clock as the providers' hourly and per-minute windows do. The zero
// value is an empty window. It is not safe for concurrent use: its
// owner's lock guards it.
type Window struct {
	// Start is when the current window began.
	Start time.Time
	// N is the calls counted in it.
	N int
}

// At returns w rolled over to the window of length holding now: a window
// that ended starts again empty.
func (w *Window) At(now time.Time, length time.Duration) *Window {
	ns := now.UnixNano()
	start := time.Unix(0, ns-ns%int64(length))
	if !w.Start.Equal(start) {
		w.Start, w.N = start, 0
	}
	return w
}

// Reset is when the window of length ends, in Unix seconds rounded up: a
// client that waits until then finds the next window.
func (w *Window) Reset(length time.Duration) int64 {
	t := w.Start.Add(length)
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
