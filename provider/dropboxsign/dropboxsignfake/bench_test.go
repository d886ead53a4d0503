package dropboxsignfake_test

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/sim"
)

// BenchmarkSearchByMetadata is the look-up a client makes before sending
// (list?query=<key>, unfielded, as provider/dropboxsign does, or
// metadata:<key>), against a simulator holding n signature requests:
// answered from the search index either way, its time does not grow with
// n (an unfielded term scanned every request before it was indexed: 250ms
// at 10k requests, for every send of a 10k-request bench).
func BenchmarkSearchByMetadata(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		h := start(b, dropboxsignfake.Config{StandardLimit: 1 << 30, HighTierLimit: 1 << 30}, sim.Config{})
		for i := range n {
			h.send(request(fmt.Sprint("r", i), 1), "")
		}
		h.get("/v3/signature_request/list?query=metadata:r0") // the first look-up fills the index from the engine
		for _, field := range []string{"metadata:", ""} {
			b.Run(fmt.Sprintf("query=%sID/requests=%d", field, n), func(b *testing.B) {
				h.t = b
				for i := 0; b.Loop(); i++ {
					r := h.get("/v3/signature_request/list?" + url.Values{"query": {fmt.Sprintf("%sr%d", field, i%n)}}.Encode())
					if r.code != 200 {
						b.Fatalf("list: %d %s", r.code, r.body)
					}
				}
			})
		}
	}
}
