package processor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the processor's Prometheus metrics.
type metrics struct {
	recordsIn    *prometheus.CounterVec // by topic
	recordsOut   *prometheus.CounterVec // by topic
	duplicates   prometheus.Counter
	replays      prometheus.Counter
	unchanged    prometheus.Counter
	deadLetters  prometheus.Counter
	commits      prometheus.Counter
	aborts       *prometheus.CounterVec // by reason
	batchSeconds *prometheus.HistogramVec
	roundTrips   prometheus.Counter
	conflicts    prometheus.Counter
	restores     prometheus.Counter
	created      prometheus.Counter
	failed       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		recordsIn:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_records_in_total", Help: "Records consumed, by topic."}, []string{"topic"}),
		recordsOut:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_records_out_total", Help: "Records produced, by topic (counted when their transaction commits)."}, []string{"topic"}),
		duplicates:   prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_duplicates_total", Help: "Events already applied from another record: dropped."}),
		replays:      prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_replays_total", Help: "Events re-read from the record they were applied from (after a crash): their stored result re-emitted."}),
		unchanged:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_unchanged_total", Help: "New events that changed nothing (older than the state, or confirming it)."}),
		deadLetters:  prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_dead_letters_total", Help: "Records sent to the DLQ."}),
		commits:      prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_transactions_committed_total", Help: "Transactions committed."}),
		aborts:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_transactions_aborted_total", Help: "Transactions aborted, by reason."}, []string{"reason"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_processor_batch_seconds", Help: "Time to process and commit one batch, by input.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"input"}),
		roundTrips:   prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_redis_round_trips_total", Help: "Redis round trips made applying events."}),
		conflicts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_redis_conflicts_total", Help: "Compare-and-set losses that forced a re-read."}),
		restores:     prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_restores_total", Help: "Times envelope state was restored from the status topic."}),
		created:      prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_envelopes_created_total", Help: "Envelopes created at a provider."}),
		failed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_requests_failed_total", Help: "Requests the provider refused (envelope FAILED)."}),
	}
	err := errors.Join(
		register(reg, &m.recordsIn), register(reg, &m.recordsOut), register(reg, &m.duplicates),
		register(reg, &m.replays), register(reg, &m.unchanged), register(reg, &m.deadLetters),
		register(reg, &m.commits), register(reg, &m.aborts), register(reg, &m.batchSeconds),
		register(reg, &m.roundTrips), register(reg, &m.conflicts), register(reg, &m.restores),
		register(reg, &m.created), register(reg, &m.failed),
	)
	return m, err
}

// register registers *c with reg or, when reg already holds a collector
// of that name, points *c at it: a processor restarted in the same process
// (esignflow dev, tests) carries on with the counters of its previous life.
func register[T prometheus.Collector](reg prometheus.Registerer, c *T) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		*c = are.ExistingCollector.(T)
		return nil
	}
	return err
}
