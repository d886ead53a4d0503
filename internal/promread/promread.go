// Package promread reads values back out of a Prometheus registry without a
// scrape: what the benchmarks report and what the tests assert on.
package promread

import "github.com/prometheus/client_golang/prometheus"

// Series is one exported series of a metric.
type Series struct {
	Labels map[string]string
	// Value is a counter's, gauge's or untyped metric's value.
	Value float64
	// Count and Buckets are a histogram's sample count and cumulative
	// counts by upper bound.
	Count   uint64
	Buckets map[float64]uint64
}

// Find returns the series of the metric name whose labels include every
// pair of match (nil matches all).
func Find(g prometheus.Gatherer, name string, match map[string]string) ([]Series, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []Series
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			s := Series{Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if s.Labels[k] != v {
					continue next
				}
			}
			s.Value = m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			if h := m.GetHistogram(); h != nil {
				s.Count = h.GetSampleCount()
				s.Buckets = map[float64]uint64{}
				for _, b := range h.GetBucket() {
					s.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Sum adds up the values of Find's series; found says whether any matched.
func Sum(g prometheus.Gatherer, name string, match map[string]string) (total float64, found bool, err error) {
	ss, err := Find(g, name, match)
	for _, s := range ss {
		total += s.Value
	}
	return total, len(ss) > 0, err
}
