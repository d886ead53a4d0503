// Package envelopetest helps tests of the state machine and of the
// providers' event mappings prove that the order events arrive in does not
// matter.
package envelopetest

import "github.com/esignflow/esignflow/schemas"

// EveryOrder calls f with every permutation of evs, each a fresh slice f
// may keep (n events: n! calls; 7 events are 5,040).
func EveryOrder(evs []schemas.EnvelopeEvent, f func([]schemas.EnvelopeEvent)) {
	a := append([]schemas.EnvelopeEvent(nil), evs...)
	var perm func(k int)
	perm = func(k int) {
		if k == len(a) {
			f(append([]schemas.EnvelopeEvent(nil), a...))
			return
		}
		for i := k; i < len(a); i++ {
			a[k], a[i] = a[i], a[k]
			perm(k + 1)
			a[k], a[i] = a[i], a[k]
		}
	}
	perm(0)
}
