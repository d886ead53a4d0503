// Package promreg registers Prometheus collectors that several components
// of one process share (the processor and the sink of `esignflow dev`, a
// component restarted in place): the second registration takes the first's
// collector instead of failing.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c with reg; when a collector of the same description
// is there already, *c becomes that one. A collector of another type under
// the same name is an error.
func Register[T prometheus.Collector](reg prometheus.Registerer, c *T) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		existing, ok := are.ExistingCollector.(T)
		if !ok {
			return err
		}
		*c = existing
		return nil
	}
	return err
}
