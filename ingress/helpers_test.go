package ingress

import (
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"
)

func promRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

type recorder struct {
	header http.Header
	code   int
}

func newRecorder() *recorder                    { return &recorder{header: http.Header{}} }
func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func httptestRequest() *http.Request {
	return httptest.NewRequest(http.MethodPost, "/webhooks/sim", nil)
}
