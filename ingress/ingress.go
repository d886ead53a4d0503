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
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/internal/kafkalog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Ingress is the HTTP front door. Create it with New, start it with Run.
type Ingress struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	slots chan struct{} // in-flight bound

	ready chan struct{}
	mu    sync.Mutex
	addr  string
	prod  *kgo.Client
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
	return &Ingress{cfg: cfg, log: cfg.Logger.With("component", "ingress"), m: m,
		slots: make(chan struct{}, cfg.MaxInFlight), ready: make(chan struct{})}, nil
}

// Ready is closed once Run listens.
func (in *Ingress) Ready() <-chan struct{} { return in.ready }

// Addr is the listening address, valid after Ready.
func (in *Ingress) Addr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

// Run connects the producer, listens and serves until ctx ends, then stops
// taking requests, lets those in flight finish (up to 10s), flushes the
// producer and returns.
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
	ln := in.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", in.cfg.Addr); err != nil {
			return fmt.Errorf("ingress: listen on %s: %w", in.cfg.Addr, err)
		}
	}
	in.mu.Lock()
	in.addr = ln.Addr().String()
	in.mu.Unlock()
	srv := &http.Server{
		Handler:           in.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	close(in.ready)
	in.log.Info("ingress listening", "addr", in.addr)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("ingress: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		in.log.Warn("shutdown did not finish in time", "err", err)
	}
	if err := prod.Flush(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		in.log.Warn("producer flush", "err", err)
	}
	return nil
}

// Handler returns the HTTP routes. Run serves it.
func (in *Ingress) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/{provider}", in.bounded(in.webhook))
	mux.HandleFunc("POST /v1/signing-requests", in.bounded(in.signingRequest))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", in.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(in.cfg.Gatherer, promhttp.HandlerOpts{}))
	return mux
}

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
	if in.prod == nil {
		errs = append(errs, errors.New("kafka: producer not started"))
	} else if err := in.prod.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("kafka: %w", err))
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
