package ratewindow_test

import (
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/sim/ratewindow"
)

func TestWindow(t *testing.T) {
	base := time.Unix(1_700_000_000, 0) // a multiple of 2s
	var w ratewindow.Window
	for _, tc := range []struct {
		name      string
		at        time.Duration // after base
		length    time.Duration
		count     bool
		wantN     int
		wantReset int64
	}{
		{"first call", 0, 2 * time.Second, true, 1, 1_700_000_002},
		{"same window", 1500 * time.Millisecond, 2 * time.Second, true, 2, 1_700_000_002},
		{"next window starts empty", 2 * time.Second, 2 * time.Second, false, 0, 1_700_000_004},
		{"reset rounds up", 2 * time.Second, 1500 * time.Millisecond, false, 0, 1_700_000_003},
	} {
		win := w.At(base.Add(tc.at), tc.length)
		if tc.count {
			win.N++
		}
		if win.N != tc.wantN || win.Reset(tc.length) != tc.wantReset {
			t.Errorf("%s: n %d, reset %d; want %d, %d", tc.name, win.N, win.Reset(tc.length), tc.wantN, tc.wantReset)
		}
	}
}
