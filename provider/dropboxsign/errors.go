package dropboxsign

import (
	"errors"
	"fmt"

	"github.com/esignflow/esignflow/provider"
)

// Sentinel errors of the API client.
var (
	// ErrFilesNotReady means Dropbox Sign is still preparing a signature
	// request's files (GET /signature_request/files answered 409): the
	// download is worth asking again later, not an error of the request.
	// It wraps provider.ErrNotReady, the sentinel the sink waits on, and
	// Download returns it wrapped in a *provider.TransientError, so
	// provider.IsTransient holds too and errors.Is tells it apart from an
	// outage.
	ErrFilesNotReady = fmt.Errorf("dropboxsign: files not ready yet: %w", provider.ErrNotReady)
	// ErrInFlight means Dropbox Sign answered a send with 409 "An
	// identical request is already being processed": an earlier attempt
	// with the same Idempotency-Key is being acted on. Create waits and
	// looks the request up again; it surfaces wrapped in a
	// *provider.TransientError only when Create gives up.
	ErrInFlight = errors.New("dropboxsign: an identical request is already being processed")
)

// APIError is an error answer of the API: its HTTP status and the
// {"error": {"error_msg", "error_name", "error_path"}} body.
type APIError struct {
	Status int
	Name   string // error_name, e.g. bad_request, exceeded_rate
	Msg    string // error_msg
	Path   string // error_path, when Dropbox Sign names the field
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Name != "" {
		s += ": " + e.Name
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Path != "" {
		s += " (at " + e.Path + ")"
	}
	return s
}
