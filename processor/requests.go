package processor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/schemas"
)

// handleRequests creates an envelope for each request (in parallel, bounded)
// and returns the API events that report them. A request whose id already
// has an envelope is a duplicate and is skipped; a retried create uses the
// same idempotency key, so it can never make a second envelope either way.
// A transient provider failure fails the batch (it is retried); a refusal
// becomes a FAILED event.
func (p *Processor) handleRequests(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error {
	p.m.recordsIn.WithLabelValues(p.cfg.Codec.Topics().Requests).Add(float64(len(recs)))
	p.lettersEnded(p.cfg.Codec.Topics().Requests, false) // a batch that ended in a crash left its own
	out := make([][]*kgo.Record, len(recs))
	errs := make([]error, len(recs))
	sem := make(chan struct{}, p.cfg.CreateConcurrency)
	seen := make(map[store.RequestKey]string, len(recs)) // the hash of each request's first record
	reqs := make([]*schemas.SigningRequest, len(recs))
	var (
		idx    []int // of reqs claimed
		keys   []store.RequestKey
		hashes []string
	)
	for i, r := range recs {
		var req schemas.SigningRequest
		err := p.cfg.Codec.Decode(ctx, r.Value, &req)
		if err == nil {
			err = validateRequest(req)
		}
		if err == nil && p.cfg.Providers[p.providerOf(req)] == nil {
			err = fmt.Errorf("%w: request %q of tenant %q: %w", errInvalidRequest, req.RequestID, req.Tenant, registry.NotEnabled(p.providerOf(req)))
		}
		if err != nil {
			if !schemas.IsPoison(err) && !errors.Is(err, errInvalid) {
				return fmt.Errorf("decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			dl, err := p.deadLetter(r, err)
			if err != nil {
				return err
			}
			out[i] = []*kgo.Record{dl}
			continue
		}
		key := store.RequestKey{Tenant: req.Tenant, ID: req.RequestID}
		hash, err := requestHash(req)
		if err != nil {
			return err
		}
		if first, ok := seen[key]; ok {
			// The same identity twice in one batch: the first record is
			// the one claimed; this one is a duplicate of it, or, with
			// other content, a conflicting request.
			if first == hash {
				p.m.duplicateRequests.Inc()
				continue
			}
			dl, err := p.deadLetter(r, fmt.Errorf("%w: request %q of tenant %q came with other content at an earlier offset of the same batch; a request id names one request per tenant",
				errConflictingRequest, key.ID, key.Tenant))
			if err != nil {
				return err
			}
			out[i] = []*kgo.Record{dl}
			continue
		}
		seen[key] = hash
		reqs[i] = &req
		idx = append(idx, i)
		keys = append(keys, key)
		hashes = append(hashes, hash)
	}
	// Claim each request's identity with its content's hash (one round
	// trip for the batch): one that already has an envelope is a
	// duplicate; one claimed first with other content is a conflicting
	// request, dead-lettered; one claimed with the same content and no
	// envelope yet is created (again: the provider's idempotency makes a
	// retried create return the first envelope).
	entries, err := p.cfg.Store.ClaimRequests(ctx, keys, hashes)
	if err != nil {
		return err
	}
	for j, i := range idx {
		e := entries[j]
		switch {
		case e.Hash != "" && e.Hash != hashes[j]:
			err := fmt.Errorf("%w: request %q of tenant %q was accepted before with other content (envelope %q); a request id names one request per tenant",
				errConflictingRequest, keys[j].ID, keys[j].Tenant, e.EnvelopeID)
			dl, derr := p.deadLetter(recs[i], err)
			if derr != nil {
				return derr
			}
			out[i], reqs[i] = []*kgo.Record{dl}, nil
		case e.EnvelopeID != "":
			p.log.Debug("request already has an envelope", "tenant", keys[j].Tenant, "request_id", keys[j].ID, "envelope_id", e.EnvelopeID)
			p.m.duplicateRequests.Inc()
			reqs[i] = nil
		}
	}
	var wg sync.WaitGroup
	for j, i := range idx {
		req := reqs[i]
		if req == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = p.createOne(ctx, *req, hashes[j])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, o := range out {
		for _, r := range o {
			emit(r)
		}
	}
	return nil
}

var errConflictingRequest = errors.New("conflicting request")

// requestHash identifies a request's content: the SHA-256 of its JSON form
// (whose map keys are sorted, so equal requests hash equally whatever
// schema version or client encoded them).
func requestHash(req schemas.SigningRequest) (string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("hash request %s: %w", req.RequestID, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// providerOf is the provider a request is created with: the one it
// names, or the default.
func (p *Processor) providerOf(req schemas.SigningRequest) string {
	if req.Provider == "" {
		return p.cfg.DefaultProvider
	}
	return req.Provider
}

// errInvalidRequest marks a signing request that cannot be created as it
// is: it is dead-lettered, as an invalid record (errors.Is errInvalid
// holds), with a reason that says it is a request.
var errInvalidRequest error = invalidRequest{}

type invalidRequest struct{}

func (invalidRequest) Error() string        { return "invalid request" }
func (invalidRequest) Is(target error) bool { return target == errInvalid }

func validateRequest(req schemas.SigningRequest) error {
	switch {
	case req.RequestID == "":
		return fmt.Errorf("%w: request_id is empty", errInvalidRequest)
	case len(req.Recipients) == 0:
		return fmt.Errorf("%w: request %s has no recipients", errInvalidRequest, req.RequestID)
	case len(req.Documents) == 0:
		return fmt.Errorf("%w: request %s has no documents", errInvalidRequest, req.RequestID)
	}
	return nil
}

// createOne creates one envelope and returns the event that reports it,
// which carries hash, the request's content hash as claimed, into the
// envelope's state: the changelog keeps it for the request index a
// restore rebuilds, so a conflicting request is refused after a Redis
// loss too.
func (p *Processor) createOne(ctx context.Context, req schemas.SigningRequest, hash string) ([]*kgo.Record, error) {
	now := time.Now()
	rid, tenant := req.RequestID, req.Tenant
	ev := schemas.EnvelopeEvent{
		EventID: "api:" + req.RequestID, Provider: p.providerOf(req), RequestID: &rid, Tenant: &tenant, RequestHash: &hash,
		Source: schemas.SourceAPI, Type: "envelope.created", ReceivedAt: now, Recipients: []schemas.RecipientUpdate{},
		Metadata: map[string]string{},
	}
	env, err := p.cfg.Providers[p.providerOf(req)].Create(ctx, store.RequestKey{Tenant: req.Tenant, ID: req.RequestID}.Scoped(), req)
	switch {
	case provider.IsPermanent(err):
		p.m.failed.Inc()
		p.log.Warn("provider refused the request", "request_id", req.RequestID, "err", err)
		failed, reason := schemas.StatusFailed, err.Error()
		ev.EnvelopeID = store.FailedEnvelopeID(store.RequestKey{Tenant: req.Tenant, ID: req.RequestID}.Scoped())
		ev.Status, ev.Reason, ev.OccurredAt, ev.Type = &failed, &reason, now, "envelope.failed"
	case err != nil:
		return nil, fmt.Errorf("create envelope for request %s: %w", req.RequestID, err)
	default:
		p.m.created.Inc()
		st := env.Status
		ev.EnvelopeID, ev.Status, ev.OccurredAt, ev.Recipients = env.ID, &st, env.StatusAt, env.Recipients
		if ev.Recipients == nil {
			ev.Recipients = []schemas.RecipientUpdate{}
		}
		for k, v := range env.Metadata {
			ev.Metadata[k] = v
		}
	}
	val, err := p.cfg.Codec.Encode(&ev)
	if err != nil {
		return nil, fmt.Errorf("encode event for request %s: %w", req.RequestID, err)
	}
	return []*kgo.Record{{Topic: p.cfg.Codec.Topics().Events, Key: []byte(ev.EnvelopeID), Value: val}}, nil
}
