package sim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
)

// TestEnvelopesByIDAndKey: the indexed accessors find what Envelopes with
// the same filter finds, count a repeated id or key once, leave unknown
// ones out, and never find an envelope created without a key.
func TestEnvelopesByIDAndKey(t *testing.T) {
	s, _ := start(t, sim.Config{Step: time.Hour})
	create := func(key string) string {
		t.Helper()
		e, err := s.CreateEnvelope(sim.EnvelopeSpec{Key: key, Subject: "s"}, false)
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	a1, b, a2, none := create("a"), create("b"), create("a"), create("")
	ids := func(v []sim.EnvelopeInfo) string {
		var out []string
		for _, e := range v {
			out = append(out, e.ID)
		}
		return fmt.Sprint(out)
	}
	all := s.Envelopes(nil)
	if len(all) != 4 {
		t.Fatalf("Envelopes: %d, want 4", len(all))
	}
	onlyB := func(e *sim.EnvelopeInfo) bool { return e.ID == b }
	tests := []struct {
		name string
		got  []sim.EnvelopeInfo
		want []string
	}{
		{"key a", s.EnvelopesByKey([]string{"a"}, nil), []string{a1, a2}},
		{"keys a,b,a", s.EnvelopesByKey([]string{"a", "b", "a"}, nil), []string{a1, b, a2}},
		{"keys b,nobody with match", s.EnvelopesByKey([]string{"b", "nobody"}, onlyB), []string{b}},
		{"empty key", s.EnvelopesByKey([]string{""}, nil), nil},
		{"ids", s.EnvelopesByID([]string{none, a1, "nobody", a1}, nil), []string{a1, none}},
		{"ids with match", s.EnvelopesByID([]string{a2, b}, onlyB), []string{b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Envelopes' order: oldest status change first (creation
			// order here), ties by id.
			want := []sim.EnvelopeInfo{}
			for _, e := range all {
				for _, id := range tt.want {
					if e.ID == id {
						want = append(want, e)
					}
				}
			}
			if got := ids(tt.got); got != ids(want) {
				t.Fatalf("got %s, want %s", got, ids(want))
			}
		})
	}
}
