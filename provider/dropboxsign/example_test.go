package dropboxsign_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign"
)

// A Client is built from a key file only; New makes no call (Check does).
// Its errors say what the caller does next.
func ExampleNew() {
	_, err := dropboxsign.New(dropboxsign.Config{BaseURL: dropboxsign.DefaultBaseURL})
	fmt.Println(err)

	// How the sink and a poller read a Client's errors.
	for _, err := range []error{
		&provider.TransientError{Err: fmt.Errorf("download signed of 2b38…: %w", dropboxsign.ErrFilesNotReady)},
		&provider.RateLimitedError{RetryAfter: 20 * time.Second},
		&provider.PermanentError{Status: 400, Reason: "dropboxsign: HTTP 400: bad_request"},
	} {
		var rl *provider.RateLimitedError
		switch {
		case errors.Is(err, provider.ErrNotReady):
			fmt.Println("files being prepared: back off this envelope")
		case errors.As(err, &rl):
			fmt.Println("no call of this tier for", rl.RetryAfter)
		case provider.IsPermanent(err):
			fmt.Println("refused: the envelope fails")
		}
	}
	// The Idempotency-Key and metadata search term of a request.
	fmt.Println(dropboxsign.CreateKey("acme", "req-42"))
	// Output:
	// dropboxsign: config: APIKeyFile is required
	// files being prepared: back off this envelope
	// no call of this tier for 20s
	// refused: the envelope fails
	// esf12dae09167ba1bc2192d0277829cc0fd0
}
