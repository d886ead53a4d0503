// Package ingress is esignflow's front door: it verifies provider webhooks
// and publishes them durably to esignflow.events.v1, and takes signing
// requests over HTTP for upstream systems without a Kafka client.
//
// A 2xx is never given for something not durably written: every publish is
// acknowledged by the broker (acks=all, idempotent producer) before the
// answer. A broker that cannot take the record gets the provider a 503 with
// Retry-After, so the provider retries.
package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/internal/kafkalog"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
)

// Ingress is the HTTP front door. Create it with New, start it with Run.
type Ingress struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	slots chan struct{} // in-flight bound
	store *store.Store  // the processor's, read for request status

	ready    chan struct{}
	mu       sync.Mutex
	addr     string
	apiAddr  string
	prod     *kgo.Client
	topicsOK atomic.Bool // topics created or verified at start
}

// New returns an Ingress for cfg; it connects and listens only in Run.
func New(cfg Config) (*Ingress, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("ingress: metrics: %w", err)
	}
	st, err := store.New(store.Config{Client: cfg.Redis, Prefix: cfg.KeyPrefix})
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	return &Ingress{cfg: cfg, log: cfg.Logger.With("component", "ingress"), m: m, store: st,
		slots: make(chan struct{}, cfg.MaxInFlight), ready: make(chan struct{})}, nil
}

// Ready is closed once Run listens on both addresses.
func (in *Ingress) Ready() <-chan struct{} { return in.ready }

// Addr is the webhook listener's address, valid after Ready.
func (in *Ingress) Addr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

// APIAddr is the API listener's address, valid after Ready.
func (in *Ingress) APIAddr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.apiAddr
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Run connects the producer, listens on both addresses and serves until
// ctx ends, then stops taking requests, lets those in flight finish (up to
// 10s), flushes the producer and returns. Meanwhile it creates the topics
// that are missing (retrying until it can): /readyz fails until they exist.
func (in *Ingress) Run(ctx context.Context) error {
	prod, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(in.cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(time.Minute),
		kgo.WithLogger(kafkalog.New(in.log)),
		compression.DefaultOpt(),
	}, in.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("ingress: kafka producer: %w", err)
	}
	defer prod.Close()
	in.prod = prod
	wln, err := listenOr(in.cfg.Listener, in.cfg.Addr)
	if err != nil {
		return err
	}
	aln, err := listenOr(in.cfg.APIListener, in.cfg.APIAddr)
	if err != nil {
		wln.Close()
		return err
	}
	in.mu.Lock()
	in.addr, in.apiAddr = wln.Addr().String(), aln.Addr().String()
	in.mu.Unlock()
	wsrv, asrv := newServer(in.WebhookHandler()), newServer(in.APIHandler())
	errc := make(chan error, 2)
	go func() { errc <- wsrv.Serve(wln) }()
	go func() { errc <- asrv.Serve(aln) }()
	tctx, stopTopics := context.WithCancel(ctx)
	topicsDone := make(chan struct{})
	go func() { defer close(topicsDone); in.ensureTopics(tctx) }()
	defer func() { stopTopics(); <-topicsDone }()
	close(in.ready)
	in.log.Info("ingress listening", "webhooks", in.addr, "api", in.apiAddr)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range []*http.Server{wsrv, asrv} {
		if err := srv.Shutdown(sctx); err != nil {
			in.log.Warn("shutdown did not finish in time", "err", err)
		}
	}
	if err := prod.Flush(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		in.log.Warn("producer flush", "err", err)
	}
	if serveErr != nil {
		return fmt.Errorf("ingress: serve: %w", serveErr)
	}
	return nil
}

func listenOr(ln net.Listener, addr string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// ensureTopics creates the missing topics, as the processor does at
// start, retrying until it succeeds or ctx ends.
func (in *Ingress) ensureTopics(ctx context.Context) {
	tc := in.cfg.Topics
	tc.Names = in.cfg.Codec.Topics()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := topics.Ensure(actx, in.prod, tc)
		cancel()
		if err == nil {
			in.topicsOK.Store(true)
			return
		}
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("topics not created or verified yet; not ready", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// WebhookHandler returns the public listener's routes: only
// POST /webhooks/{provider}.
func (in *Ingress) WebhookHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/{provider}", in.bounded(in.webhook))
	return in.m.timed("webhooks", mux, problemMux(mux))
}

// APIHandler returns the internal listener's routes: the signing-request
// API (bearer token), /metrics, /healthz and /readyz.
func (in *Ingress) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/signing-requests", in.bounded(in.authenticated(epRequests, in.signingRequest)))
	mux.HandleFunc("GET /v1/signing-requests/{request_id}", in.bounded(in.authenticated(epRequestStatus, in.requestStatus)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", in.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(in.cfg.Gatherer, promhttp.HandlerOpts{}))
	return in.m.timed("api", mux, problemMux(mux))
}

// problemMux answers what mux has no route for — 404, and 405 with its
// Allow header — as problem+json rather than the mux's plain text.
func problemMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		code := rec.code
		switch code {
		case 0, http.StatusOK:
			code = http.StatusNotFound
		case http.StatusMovedPermanently, http.StatusPermanentRedirect, http.StatusTemporaryRedirect, http.StatusFound:
			maps.Copy(w.Header(), rec.header)
			w.WriteHeader(code)
			return
		}
		detail := fmt.Sprintf("no route for %s", r.URL.Path)
		if code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			detail = fmt.Sprintf("%s does not take %s (allowed: %s)", r.URL.Path, r.Method, rec.header.Get("Allow"))
		}
		writeProblem(w, code, detail, nil)
	})
}

// headerRecorder keeps what the mux's own error handlers write.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.code = code }

// bounded refuses work past MaxInFlight with 503 rather than queueing it in
// memory.
func (in *Ingress) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case in.slots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			in.problem(w, r, "overloaded", http.StatusServiceUnavailable, "too many requests in flight", nil)
			return
		}
		in.m.inFlight.Inc()
		defer func() {
			<-in.slots
			in.m.inFlight.Dec()
		}()
		h(w, r)
	}
}

func (in *Ingress) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var errs []error
	switch {
	case in.prod == nil:
		errs = append(errs, errors.New("kafka: producer not started"))
	case !in.topicsOK.Load():
		errs = append(errs, errors.New("kafka: topics not created or verified yet"))
	default:
		if err := in.topicsReachable(ctx); err != nil {
			errs = append(errs, fmt.Errorf("kafka: %w", err))
		}
	}
	if err := in.cfg.Redis.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if in.cfg.Ready != nil {
		if err := in.cfg.Ready(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// topicsReachable asks the brokers for the metadata of the topics the
// ingress produces to: each must exist and every partition have a leader.
func (in *Ingress) topicsReachable(ctx context.Context) error {
	t := in.cfg.Codec.Topics()
	md, err := kadm.NewClient(in.prod).Metadata(ctx, t.Events, t.Requests, t.DLQ)
	if err != nil {
		return err
	}
	for _, name := range []string{t.Events, t.Requests, t.DLQ} {
		td, ok := md.Topics[name]
		switch {
		case !ok:
			return fmt.Errorf("topic %s: not in the metadata", name)
		case td.Err != nil:
			return fmt.Errorf("topic %s: %w", name, td.Err)
		}
		for _, p := range td.Partitions {
			if p.Err != nil && !errors.Is(p.Err, kerr.ReplicaNotAvailable) {
				return fmt.Errorf("topic %s partition %d: %w", name, p.Partition, p.Err)
			}
			if p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: no leader", name, p.Partition)
			}
		}
	}
	return nil
}

// FieldError is one invalid field of a signing request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// problem answers with an RFC 9457 problem and counts the outcome.
func (in *Ingress) problem(w http.ResponseWriter, r *http.Request, endpoint string, code int, detail string, fields []FieldError) {
	in.m.requests.WithLabelValues(endpoint, fmt.Sprint(code)).Inc()
	writeProblem(w, code, detail, fields)
}

func writeProblem(w http.ResponseWriter, code int, detail string, fields []FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Type   string       `json:"type"`
		Title  string       `json:"title"`
		Status int          `json:"status"`
		Detail string       `json:"detail,omitempty"`
		Errors []FieldError `json:"errors,omitempty"`
	}{"about:blank", http.StatusText(code), code, detail, fields})
}

// publish writes records and waits for the broker's acknowledgement, at
// most PublishTimeout. A record already sent when the time is up cannot be
// recalled (the idempotent producer keeps retrying it, bounded by its
// delivery timeout): it may still land, and the sender's retry is then a
// duplicate the processor drops.
func (in *Ingress) publish(ctx context.Context, recs ...*kgo.Record) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.PublishTimeout)
	defer cancel()
	acks := make(chan error, len(recs))
	for _, r := range recs {
		in.prod.Produce(ctx, r, func(_ *kgo.Record, err error) { acks <- err })
	}
	for range recs {
		select {
		case err := <-acks:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("no acknowledgement within %s: %w", in.cfg.PublishTimeout, ctx.Err())
		}
	}
	in.m.publish.Observe(time.Since(start).Seconds())
	return nil
}
