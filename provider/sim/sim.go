// Package sim is a local eSignature provider that behaves like a real one,
// failures included: it creates envelopes with idempotency keys, takes their
// configuration in serial steps, moves recipients through their states over
// time, sends signed Standard Webhooks for every transition, answers polls,
// serves the signed artefacts, and injects the faults real integrations
// meet (dropped, duplicated, delayed webhooks; 5xx and timeouts after
// acting; corrupted downloads; a network partition). It knows the truth, so
// tests and benchmarks can check what esignflow concluded against it.
//
// What it speaks is a Dialect over that engine: by default its own /v1 API
// and Standard Webhooks; a provider's dialect (e.g.
// provider/docusign/docusignfake) serves that provider's API and webhooks
// with the same lifecycle, faults and truth.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Simulator is the simulated provider. Create it with New, start it with
// Run; its Go API (Truth, SetFaults, Stats) is safe for concurrent use.
type Simulator struct {
	cfg     Config
	log     *slog.Logger
	limiter *rate.Limiter
	dialect Dialect
	handler http.Handler

	mu        sync.Mutex
	faults    Faults
	envelopes map[string]*envelope
	byKey     map[string][]*envelope // creation key → its envelopes; see add
	keys      map[string]*idemEntry  // idempotency key → first request
	seq       uint64                 // envelope ids
	apiRoll   uint64                 // API fault draws
	started   time.Time

	tmu    sync.Mutex // guards timers and tseq
	timers timerHeap
	tseq   uint64
	wake   chan struct{}

	deliveries chan delivery
	dirty      chan struct{} // signalled on every change of the state; see persist
	stop       chan struct{} // closed when Run stops; see stopped
	ready      chan struct{}
	url        string
	stats      statCounters
}

// envelope is the simulator's truth about one envelope.
type envelope struct {
	id         string
	key        string
	status     string // "created" until sent, then schemas.Status lower-cased
	statusAt   time.Time
	createdAt  time.Time
	subject    string
	metadata   map[string]string
	documents  []Document
	recipients []*recipient
	fate       string // completed, declined, voided, expired
	events     uint64 // webhook sequence
	reason     string // why it was voided, declined or expired
	attrs      map[string]string
	history    []Change
}

// setStatus moves e to status at now and records it in its history.
// Called with s.mu held.
func (e *envelope) setStatus(status string, now time.Time) {
	e.status, e.statusAt = status, now
	e.history = append(e.history, Change{Status: status, At: now})
}

type recipient struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Email        string `json:"email"`
	Role         string `json:"role,omitempty"`
	RoutingOrder int    `json:"routing_order"`
	Auth         string `json:"auth,omitempty"`
	status       string
	statusAt     time.Time
	ip, agent    string
	verifiedAt   *time.Time
	attrs        map[string]string
	history      []Change
}

// setStatus moves r to status at now and records it in its history.
func (r *recipient) setStatus(status string, now time.Time) {
	r.status, r.statusAt = status, now
	r.history = append(r.history, Change{Status: status, At: now})
}

// Document is one document of an envelope, as the standard API takes it:
// a name and either inline content or a URI with its SHA-256.
type Document struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type,omitempty"`
	URI         string `json:"uri,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Content     []byte `json:"content,omitempty"`
}

// idemEntry remembers the first request of an idempotency key.
type idemEntry struct {
	bodyHash    [32]byte
	done        bool
	code        int
	body        []byte
	contentType string
}

// New returns a Simulator for cfg. It does not listen until Run.
func New(cfg Config) (*Simulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	s := &Simulator{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "sim"),
		faults:     cfg.Faults,
		envelopes:  make(map[string]*envelope),
		byKey:      make(map[string][]*envelope),
		keys:       make(map[string]*idemEntry),
		deliveries: make(chan delivery, 4096),
		ready:      make(chan struct{}),
		stop:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
		dirty:      make(chan struct{}, 1),
	}
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), int(math.Max(1, cfg.RateLimit)))
	}
	if s.dialect = cfg.Dialect; s.dialect == nil {
		s.dialect = standard{secrets: cfg.WebhookSecrets}
		s.handler = s.standardHandler()
	} else {
		s.handler = s.controlHandler(s.dialect.Handler(s))
	}
	return s, nil
}

// Ready is closed once Run listens; URL is valid from then on.
func (s *Simulator) Ready() <-chan struct{} { return s.ready }

// URL is the simulator's base URL, e.g. http://127.0.0.1:8090.
func (s *Simulator) URL() string { return s.url }

// SetFaults replaces the injected faults from now on.
func (s *Simulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	return nil
}

// Run listens and serves until ctx ends, then stops sending webhooks, shuts
// the server down within five seconds and returns after every goroutine it
// started has exited. With a StateFile, the state is loaded first, saved
// as it changes (see Config.SaveEvery) and saved a last time on the way
// out.
func (s *Simulator) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("sim: listen on %s: %w", s.cfg.Addr, err)
		}
	}
	if s.cfg.StateFile != "" {
		if err := s.load(s.cfg.StateFile); err != nil {
			ln.Close()
			return err
		}
	}
	s.url = "http://" + ln.Addr().String()
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	var workers sync.WaitGroup
	client := &http.Client{Timeout: s.cfg.DeliveryTimeout}
	workers.Add(1)
	go func() {
		defer workers.Done()
		s.schedulerLoop(ctx)
	}()
	for range s.cfg.DeliveryWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.deliver(ctx, client)
		}()
	}
	var saver sync.WaitGroup
	if s.cfg.StateFile != "" {
		saver.Add(1)
		go func() {
			defer saver.Done()
			s.persist(ctx, s.cfg.StateFile)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	close(s.ready)
	s.log.Info("simulator listening", "url", s.url, "webhooks", s.cfg.WebhookURL != "")

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	close(s.stop)
	cancel()
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutCtx)
	workers.Wait()
	saver.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if s.cfg.StateFile != "" {
		if serr := s.save(s.cfg.StateFile); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return err
}

// roll returns a repeatable number in [0, 1) for a named decision.
func (s *Simulator) roll(parts ...string) float64 {
	h := sha256.New()
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], s.cfg.Seed)
	h.Write(seed[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) / (1 << 53)
}

// jitter returns the step delay for a named step: Step × [0.5, 1.5).
func (s *Simulator) jitter(parts ...string) time.Duration {
	return time.Duration(float64(s.cfg.Step) * (0.5 + s.roll(parts...)))
}

// Truth is what the simulator knows about one envelope.
type Truth struct {
	ID        string         `json:"id"`
	Status    schemas.Status `json:"status"`
	RequestID string         `json:"request_id,omitempty"`
	Final     bool           `json:"final"`
}

// Truth lists every envelope's real current status, sorted by id.
func (s *Simulator) Truth() []Truth {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Truth, 0, len(s.envelopes))
	for _, e := range s.envelopes {
		st := normStatus(e.status)
		out = append(out, Truth{ID: e.id, Status: st, RequestID: e.metadata[provider.RequestIDKey], Final: terminal(e.status)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func terminal(status string) bool {
	switch status {
	case "completed", "declined", "voided", "expired":
		return true
	}
	return false
}

func normStatus(status string) schemas.Status {
	switch status {
	case "sent", "delivered", "viewed", "partially_signed", "completed", "declined", "voided", "expired":
		return schemas.Status(upper(status))
	}
	return schemas.StatusCreated
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
