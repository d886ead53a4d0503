package docusignfake_test

import (
	"fmt"
	"testing"

	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
)

// BenchmarkLookup is the call every create makes first (transaction_ids)
// and the reconciler's poll (envelope_ids), against a simulator holding
// n envelopes: with the engine's indexes the time per call does not grow
// with n.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		h := start(b, docusignfake.Config{HourlyLimit: 1 << 30, BurstLimit: 1 << 30}, sim.Config{})
		var ids []string
		for i := range n {
			ids = append(ids, h.create(definition(fmt.Sprint("r", i), "created", 1)))
		}
		b.Run(fmt.Sprintf("transaction_ids/envelopes=%d", n), func(b *testing.B) {
			h.t = b
			for i := 0; b.Loop(); i++ {
				if code, out := h.restJSON("GET", fmt.Sprintf("/envelopes?transaction_ids=txn-r%d", i%n), nil); code != 200 || out["totalSetSize"] != "1" {
					b.Fatalf("lookup: %d %v", code, out)
				}
			}
		})
		b.Run(fmt.Sprintf("envelope_ids=100/envelopes=%d", n), func(b *testing.B) {
			h.t = b
			q := ""
			for i, id := range ids[:100] {
				if i > 0 {
					q += ","
				}
				q += id
			}
			for b.Loop() {
				if code, out := h.restJSON("GET", "/envelopes?count=100&envelope_ids="+q, nil); code != 200 || out["totalSetSize"] != "100" {
					b.Fatalf("poll: %d %v", code, out)
				}
			}
		})
	}
}
