package processor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/promreg"
	"github.com/esignflow/esignflow/internal/txloop"
	"github.com/esignflow/esignflow/schemas"
)

// metrics are the processor's Prometheus metrics.
type metrics struct {
	recordsIn  *prometheus.CounterVec // by topic
	recordsOut *prometheus.CounterVec // by topic
	duplicates prometheus.Counter
	// duplicateRequests are requests that already had an envelope.
	duplicateRequests prometheus.Counter
	replays           prometheus.Counter
	unchanged         prometheus.Counter
	commits           prometheus.Counter
	batchSeconds      *prometheus.HistogramVec
	roundTrips        prometheus.Counter
	conflicts         prometheus.Counter
	restores          prometheus.Counter
	// restoreFailures are restores that failed (and are tried again).
	restoreFailures prometheus.Counter
	// fenced are batches refused because another member claimed the
	// partition.
	fenced  prometheus.Counter
	created prometheus.Counter
	failed  prometheus.Counter
	// foreign are events of envelopes esignflow did not create, by
	// outcome (ignored, adopted).
	foreign *prometheus.CounterVec
	// statusChanges by status and eventToStatus by event source are
	// counted when the transaction of the change commits.
	statusChanges *prometheus.CounterVec
	eventToStatus *prometheus.HistogramVec
	loop          *txloop.Metrics // lag, aborts and dead letters, shared with the sink
}

// Dead-letter reasons, the values of esignflow_dead_letters_total's
// reason label for component="processor".
const (
	reasonUndecodable  = "undecodable"         // not in the wire format, truncated, or the body does not decode
	reasonConflicting  = "conflicting_request" // a (tenant, request id) accepted before with other content
	reasonUnknownSchem = "unknown_schema"      // the registry does not know the schema id
	reasonIncompatible = "incompatible_schema" // the writer's schema cannot be read as esignflow's
	reasonInvalid      = "invalid"             // decodes, but the state machine cannot place it
)

// deadLetterReason classifies why a record is dead-lettered.
func deadLetterReason(err error) string {
	switch {
	case errors.Is(err, errConflictingRequest):
		return reasonConflicting
	case errors.Is(err, errInvalid):
		return reasonInvalid
	case errors.Is(err, schemas.ErrUnknownSchema):
		return reasonUnknownSchem
	case errors.Is(err, schemas.ErrIncompatible):
		return reasonIncompatible
	}
	return reasonUndecodable
}

// statuses are every envelope status, in state-machine order.
var statuses = []schemas.Status{
	schemas.StatusCreated, schemas.StatusSent, schemas.StatusDelivered, schemas.StatusViewed, schemas.StatusPartiallySigned,
	schemas.StatusCompleted, schemas.StatusDeclined, schemas.StatusVoided, schemas.StatusExpired, schemas.StatusFailed,
}

// statusBuckets span 5ms (a webhook applied at once) to a minute (a batch
// waiting behind a slow provider or a restore).
var statusBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		recordsIn:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_records_in_total", Help: "Records consumed, by topic."}, []string{"topic"}),
		recordsOut:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_records_out_total", Help: "Records produced, by topic (counted when their transaction commits)."}, []string{"topic"}),
		duplicates:        prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_duplicates_total", Help: "Events already applied from another record: dropped."}),
		duplicateRequests: prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_duplicate_requests_total", Help: "Signing requests whose (tenant, request id) already had an envelope: skipped."}),
		replays:           prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_replays_total", Help: "Events re-read from the record they were applied from (after a crash): their stored result re-emitted."}),
		unchanged:         prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_unchanged_total", Help: "New events that changed nothing (older than the state, or confirming it)."}),
		commits:           prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_transactions_committed_total", Help: "Transactions committed."}),
		batchSeconds:      prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_processor_batch_seconds", Help: "Time to process and commit one batch, by input.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"input"}),
		roundTrips:        prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_redis_round_trips_total", Help: "Redis round trips made applying events."}),
		conflicts:         prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_redis_conflicts_total", Help: "Compare-and-set losses that forced a re-read."}),
		restores:          prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_restores_total", Help: "Partitions restored from their changelog (Redis was behind, foreign or had lost them)."}),
		restoreFailures:   prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_restore_failures_total", Help: "Partition restores that failed (a changelog partition that cannot be read or a record that cannot be decoded); each is tried again, and the partition is not processed meanwhile."}),
		fenced:            prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_batches_fenced_total", Help: "Batches refused because another member claimed their partition (this member was a zombie)."}),
		created:           prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_envelopes_created_total", Help: "Envelopes created at a provider."}),
		failed:            prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_processor_requests_failed_total", Help: "Requests the provider refused (envelope FAILED)."}),
		foreign: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_processor_foreign_events_total",
			Help: "Events of envelopes esignflow did not create (no request id: sent from the provider's web app, say), by outcome: ignored, or adopted (--adopt-foreign-envelopes)."}, []string{"outcome"}),
		statusChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_status_changes_total",
			Help: "Status changes published to the status topic, by the status the envelope has after the change (a recipient update counts under the status it leaves unchanged); counted when their transaction commits."}, []string{"status"}),
		eventToStatus: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_event_to_status_seconds",
			Help:    "Time from esignflow first receiving a provider event (its received_at: webhook accepted, poll answered, create returned) to the commit of the status change it made, by event source (WEBHOOK, POLL, API).",
			Buckets: statusBuckets}, []string{"source"}),
	}
	loop, lerr := txloop.NewMetrics(reg)
	m.loop = loop
	err := errors.Join(
		promreg.Register(reg, &m.recordsIn), promreg.Register(reg, &m.recordsOut), promreg.Register(reg, &m.duplicates), promreg.Register(reg, &m.duplicateRequests),
		promreg.Register(reg, &m.replays), promreg.Register(reg, &m.unchanged),
		promreg.Register(reg, &m.commits), promreg.Register(reg, &m.batchSeconds),
		promreg.Register(reg, &m.roundTrips), promreg.Register(reg, &m.conflicts), promreg.Register(reg, &m.restores), promreg.Register(reg, &m.restoreFailures), promreg.Register(reg, &m.fenced),
		promreg.Register(reg, &m.created), promreg.Register(reg, &m.failed), promreg.Register(reg, &m.foreign),
		promreg.Register(reg, &m.statusChanges), promreg.Register(reg, &m.eventToStatus), lerr,
	)
	if loop != nil {
		loop.DeadLetterReasons("processor", reasonUndecodable, reasonUnknownSchem, reasonIncompatible, reasonInvalid)
	}
	m.foreign.WithLabelValues(foreignIgnored)
	m.foreign.WithLabelValues(foreignAdopted)
	for _, st := range statuses {
		m.statusChanges.WithLabelValues(string(st))
	}
	return m, err
}
