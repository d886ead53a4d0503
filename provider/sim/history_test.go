package sim_test

import (
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
)

func TestFirstAtLastAt(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	h := []sim.Change{{Status: "sent", At: at(1)}, {Status: "viewed", At: at(2)}, {Status: "sent", At: at(3)}, {Status: "voided", At: at(4)}}
	for _, tc := range []struct {
		name      string
		got, want time.Time
	}{
		{"first sent", sim.FirstAt(h, "sent"), at(1)},
		{"first of two statuses", sim.FirstAt(h, "expired", "voided"), at(4)},
		{"first never", sim.FirstAt(h, "signed"), time.Time{}},
		{"first of no history", sim.FirstAt(nil, "sent"), time.Time{}},
		{"last sent", sim.LastAt(h, "sent"), at(3)},
		{"last never", sim.LastAt(h, "signed"), time.Time{}},
	} {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}
