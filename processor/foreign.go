package processor

import (
	"context"
	"fmt"
	"slices"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Outcomes of an event for an envelope esignflow did not create, the
// values of esignflow_processor_foreign_events_total's outcome label
// (counted when the batch's transaction commits).
const (
	foreignIgnored = "ignored"
	foreignAdopted = "adopted"
)

// ours reports whether ev shows by itself that esignflow created its
// envelope: it is the processor's own create result, or it carries the
// request id that every envelope esignflow creates holds in its provider
// metadata (DocuSign's custom field, Dropbox Sign's metadata), so every
// webhook and poll answer of such an envelope carries it too.
func ours(ev schemas.EnvelopeEvent) bool {
	return ev.Source == schemas.SourceAPI || ev.RequestID != nil || ev.Metadata[provider.RequestIDKey] != ""
}

// screenForeign takes out of in the events of envelopes that esignflow
// did not create — a provider account sends events for every envelope in
// it, including those people send from the provider's web app — unless
// Config.AdoptForeign, when they are kept and tracked as envelopes of
// their own kind (their state is foreign: no request, no tenant). An event
// that does not show it is ours is foreign when its envelope has no state
// in partition p and no event of this batch shows the envelope is ours;
// so is any later event of an envelope adopted that way, which is applied
// (counted adopted) whatever AdoptForeign says now.
//
// The state read is outside the batch's transaction, which is exact: the
// partition's envelopes are written only by its owner, this member, and
// the partition was verified before its batch.
func (p *Processor) screenForeign(ctx context.Context, part int32, in []store.Input) ([]store.Input, error) {
	known := map[string]bool{}
	for _, x := range in {
		if ours(x.Event) {
			known[x.Event.EnvelopeID] = true
		}
	}
	var ask []string
	for _, x := range in {
		if !known[x.Event.EnvelopeID] {
			ask = append(ask, x.Event.EnvelopeID)
		}
	}
	if len(ask) == 0 {
		return in, nil
	}
	slices.Sort(ask)
	ask = slices.Compact(ask)
	stored, err := p.cfg.Store.Envelopes(ctx, part, ask)
	if err != nil {
		return nil, fmt.Errorf("read the envelopes of events without a request id: %w", err)
	}
	out := in[:0:0]
	for _, x := range in {
		id := x.Event.EnvelopeID
		e, ok := stored[id]
		switch {
		case known[id] || ok && !e.State.Foreign:
			out = append(out, x)
		case ok || p.cfg.AdoptForeign:
			// A foreign envelope adopted before (tracked whatever the
			// flag says now: its state exists and is polled), or one
			// adopted now.
			p.foreignEvent(foreignAdopted)
			out = append(out, x)
		default:
			p.foreignEvent(foreignIgnored)
			p.log.Debug("event for an envelope esignflow did not create: ignored", "envelope_id", id, "provider", x.Event.Provider, "type", x.Event.Type)
		}
	}
	return out, nil
}
