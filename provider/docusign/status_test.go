package docusign

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

// The REST recipient statuses (signer.status) as esignflow normalises
// them, read from an envelope shaped like GET /envelopes/{id}?include=
// recipients: autoresponded (a bounce or an auto-reply) is BOUNCED, which
// a later step moves on, not a final failure.
func TestRESTRecipientStatuses(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   schemas.RecipientStatus
		known  bool
	}{
		{"created", schemas.RecipientCreated, true},
		{"sent", schemas.RecipientSent, true},
		{"delivered", schemas.RecipientViewed, true},
		{"signed", schemas.RecipientSigned, true},
		{"completed", schemas.RecipientSigned, true},
		{"declined", schemas.RecipientDeclined, true},
		{"autoresponded", schemas.RecipientBounced, true},
		{"AutoResponded", schemas.RecipientBounced, true},
		{"faxpending", schemas.RecipientSent, true},
		{"somethingnew", "", false},
	} {
		t.Run(tc.status, func(t *testing.T) {
			body := `{"envelopeId":"e1","status":"sent","statusChangedDateTime":"2026-11-27T10:00:00.0000000Z",
				"recipients":{"signers":[{"recipientId":"1","email":"a@example.com","name":"A","status":"` + tc.status + `","routingOrder":"1"}]}}`
			var e envelopeJSON
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatal(err)
			}
			env, ok := e.envelope(time.Now())
			if !ok {
				t.Fatal("envelope not read")
			}
			if !tc.known {
				if len(env.Recipients) != 0 {
					t.Fatalf("an unknown status was read: %+v", env.Recipients)
				}
				return
			}
			if len(env.Recipients) != 1 || env.Recipients[0].Status != tc.want {
				t.Fatalf("recipients %+v, want one %s", env.Recipients, tc.want)
			}
		})
	}
}
