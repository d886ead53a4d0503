package txloop

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/promreg"
)

// Metrics are the metrics every loop exports: consumer lag and aborted
// transactions, and the dead letters its handler sends (DeadLettered). Create them once per registry with NewMetrics and hand the
// same value to each loop of a process; safe for concurrent use.
type Metrics struct {
	lag         *prometheus.GaugeVec   // by group, topic, partition
	aborted     *prometheus.CounterVec // by loop, reason
	deadLetters *prometheus.CounterVec // by component, reason
}

// Abort reasons, the values of the reason label of
// esignflow_transactions_aborted_total.
const (
	AbortHandler   = "handler"   // the handler returned an error
	AbortProduce   = "produce"   // a record of the transaction failed to produce
	AbortRebalance = "rebalance" // the group rebalanced before the commit
)

// NewMetrics registers the loop metrics with reg. A registry that already
// holds them (a second component of the same process, or a component
// restarted in it) shares them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esignflow_consumer_lag",
			Help: "Records of a partition this consumer has not processed yet, from its own view as of its last fetch: the high watermark minus the offset after the last record it processed. " +
				"Transaction markers it has read count as processed, so a caught-up transactional partition reads 0 (committed offset vs high watermark reads 1 there: the marker). " +
				"Reported by the replica that owns the partition.",
		}, []string{"group", "topic", "partition"}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esignflow_transactions_aborted_total",
			Help: "Transactions a consume-process-produce loop aborted (their batch is consumed again), by loop and reason: handler (processing failed), produce (an output record failed), rebalance (the group rebalanced before the commit).",
		}, []string{"loop", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esignflow_dead_letters_total",
			Help: "Records sent to the DLQ, by the component that sent them and why: undecodable, unknown_schema, incompatible_schema, invalid (processor); download_failed (the provider refused), digest_mismatch, no_downloader, not_found, undecodable (sink).",
		}, []string{"component", "reason"}),
	}
	return m, errors.Join(promreg.Register(reg, &m.lag), promreg.Register(reg, &m.aborted), promreg.Register(reg, &m.deadLetters))
}

// DeadLetterReasons makes each reason of component exist at 0, so that
// rate() sees the first dead letter.
func (m *Metrics) DeadLetterReasons(component string, reasons ...string) {
	if m == nil {
		return
	}
	for _, r := range reasons {
		m.deadLetters.WithLabelValues(component, r)
	}
}

// DeadLettered counts one record component sent to the DLQ for reason.
func (m *Metrics) DeadLettered(component, reason string) {
	if m != nil {
		m.deadLetters.WithLabelValues(component, reason).Inc()
	}
}

// abortedInit makes every reason of loop exist at 0, so that rate() sees
// the first abort.
func (m *Metrics) abortedInit(loop string) {
	if m == nil {
		return
	}
	for _, r := range []string{AbortHandler, AbortProduce, AbortRebalance} {
		m.aborted.WithLabelValues(loop, r)
	}
}

func (m *Metrics) abort(loop, reason string) {
	if m != nil {
		m.aborted.WithLabelValues(loop, reason).Inc()
	}
}

// lag tracks one session's consumer lag per partition: the high watermark
// of the partition's last fetch and the offset of the first record not
// processed yet (the position). Fetches deliver a partition's records in
// order, so everything before the first record of a fetch has been
// processed; a batch that commits moves the position past its last record,
// control records (transaction markers) included.
type lag struct {
	g            *prometheus.GaugeVec // nil: not exported
	group, topic string

	mu    sync.Mutex
	parts map[int32]*partLag
}

type partLag struct{ hwm, pos int64 }

func newLag(m *Metrics, group, topic string) *lag {
	l := &lag{group: group, topic: topic, parts: map[int32]*partLag{}}
	if m != nil {
		l.g = m.lag
	}
	return l
}

// fetched records the high watermark and position of each partition of a
// poll that carries records.
func (l *lag) fetched(fetches kgo.Fetches) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic != l.topic || len(fp.Records) == 0 {
			return
		}
		p := l.part(fp.Partition)
		p.hwm = max(p.hwm, fp.HighWatermark)
		p.pos = fp.Records[0].Offset
		l.set(fp.Partition, p)
	})
}

// processed moves the position of each partition past its last record in
// recs (in fetch order).
func (l *lag) processed(recs []*kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	touched := map[int32]*partLag{} // the gauge is set once per partition, not per record
	for _, r := range recs {
		if r.Topic != l.topic {
			continue
		}
		p := l.part(r.Partition)
		p.pos = max(p.pos, r.Offset+1)
		p.hwm = max(p.hwm, p.pos)
		touched[r.Partition] = p
	}
	for part, p := range touched {
		l.set(part, p)
	}
}

// drop forgets partitions this session no longer owns (revoked or lost),
// so that only the owner reports them.
func (l *lag) drop(parts map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, part := range parts[l.topic] {
		delete(l.parts, part)
		if l.g != nil {
			l.g.DeleteLabelValues(l.group, l.topic, strconv.Itoa(int(part)))
		}
	}
}

// close forgets every partition: the session has ended.
func (l *lag) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for part := range l.parts {
		if l.g != nil {
			l.g.DeleteLabelValues(l.group, l.topic, strconv.Itoa(int(part)))
		}
	}
	clear(l.parts)
}

func (l *lag) part(part int32) *partLag {
	p, ok := l.parts[part]
	if !ok {
		p = &partLag{}
		l.parts[part] = p
	}
	return p
}

func (l *lag) set(part int32, p *partLag) {
	if l.g != nil {
		l.g.WithLabelValues(l.group, l.topic, strconv.Itoa(int(part))).Set(float64(max(p.hwm-p.pos, 0)))
	}
}
