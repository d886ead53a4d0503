package docusign_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/docusign"
)

// A Client is built from files and identifiers only; New makes no call.
// Its errors say what the caller does next.
func ExampleNew() {
	_, err := docusign.New(docusign.Config{
		AccountID:      "9a1f7c4e-0000-4000-8000-000000000001",
		IntegrationKey: "7c2b8d7e-0000-4000-8000-000000000003",
		UserID:         "6b1c2d3e-0000-4000-8000-000000000002",
		// PrivateKeyFile missing
	})
	fmt.Println(err)

	// How a poller reads a Client's errors.
	for _, err := range []error{
		&provider.RateLimitedError{RetryAfter: 10 * time.Minute},
		&docusign.EnvelopeLimitError{EnvelopeIDs: []string{"env-1"}, Code: "Burst_Envelope_Polling_Limit_Exceeded"},
		&docusign.AuthError{Code: "consent_required", ConsentURL: "https://account-d.docusign.com/oauth/auth?..."},
	} {
		var rl *provider.RateLimitedError
		var el *docusign.EnvelopeLimitError
		switch {
		case errors.As(err, &rl):
			fmt.Println("pause every call for", rl.RetryAfter)
		case errors.As(err, &el):
			fmt.Println("back off", el.EnvelopeIDs)
		case provider.IsPermanent(err):
			fmt.Println("fix the configuration")
		}
	}
	fmt.Println(docusign.TransactionID("acme", "req-42"))
	// Output:
	// docusign: config: PrivateKeyFile is required
	// pause every call for 10m0s
	// back off [env-1]
	// fix the configuration
	// esf1-2dae09167ba1bc2192d0277829cc0fd0
}
