package bench

import (
	"bytes"
	"context"
	"fmt"
	"github.com/twmb/franz-go/pkg/kgo"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// IngressConfig sizes the ingress benchmark. Traffic goes to 127.0.0.1
// only and stops after Requests or Duration, whichever comes first.
type IngressConfig struct {
	// Requests per target, default 20,000.
	Requests int
	// Concurrency is the connections in flight, default 64: enough to
	// keep the ingress busy while each request waits for its broker
	// acknowledgement (16 gives 0.40 of the bare rate, 64 gives 0.56).
	Concurrency int
	// Duration bounds each target's run, default 30s.
	Duration time.Duration
	// Brokers is a real Kafka cluster to publish to (under a fresh topic
	// prefix, deleted after); empty uses an in-process kfake broker.
	Brokers []string
	// RedisURL is a real Redis for the idempotency keys (under a fresh
	// prefix); empty uses an in-process miniredis.
	RedisURL string
	// KafkaOpts are added to the ingress's producer (compression).
	KafkaOpts []kgo.Opt
	// Logger, default discard.
	Logger *slog.Logger
}

// IngressResult is one target's measurement.
type IngressResult struct {
	Target   string        `json:"target"`
	Requests int           `json:"requests"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_sec"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
}

type staticKeys map[string][][]byte

func (s staticKeys) Keys(p string) [][]byte { return s[p] }

// Ingress drives signed webhooks over loopback HTTP at (a) the real ingress,
// publishing durably to an in-process broker, and (b) a bare handler that
// only reads the body and checks the HMAC, and returns both.
func Ingress(ctx context.Context, cfg IngressConfig) ([]IngressResult, error) {
	if cfg.Requests <= 0 {
		cfg.Requests = 20000
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	key := stdwebhook.Secret("bench-signing-key-0123456789abcd")

	env, err := newBenchEnv(ctx, cfg.Brokers, 4, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	defer env.close()
	k, codec, rc, keyPrefix := env.kafka, env.codec, env.redis, env.prefix
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in, err := ingress.New(ingress.Config{Listener: ln, Brokers: k.brokers, Codec: codec, Redis: rc, KeyPrefix: keyPrefix, KafkaOpts: cfg.KafkaOpts,
		Secrets: staticKeys{"sim": {key}}, Logger: cfg.Logger, MaxInFlight: 4 * cfg.Concurrency})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	select {
	case <-in.Ready():
	case err := <-done:
		return nil, err
	}

	bareLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		if _, err := stdwebhook.Verify([]stdwebhook.Secret{key}, r.Header, body, time.Now(), 0); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = bare.Serve(bareLn) }()
	defer bare.Close()

	reqs := signedWebhooks(key, cfg.Requests)
	var out []IngressResult
	for _, target := range []struct{ name, url string }{
		{"ingress (verify + durable publish)", "http://" + in.Addr() + "/webhooks/sim"},
		{"bare handler (read + verify)", "http://" + bareLn.Addr().String() + "/"},
	} {
		out = append(out, drive(ctx, target.name, target.url, reqs, cfg))
	}
	cancel()
	if err := <-done; err != nil {
		return out, err
	}
	return out, nil
}

type signedWebhook struct {
	body []byte
	h    http.Header
}

func signedWebhooks(key stdwebhook.Secret, n int) []signedWebhook {
	out := make([]signedWebhook, n)
	now := time.Now()
	for i := range out {
		id := "evt_bench_" + strconv.Itoa(i)
		body := []byte(fmt.Sprintf(`{"id":%q,"type":"recipient.viewed","created_at":%q,"data":{"envelope_id":"env-%d","status":"viewed","status_changed_at":%q,"metadata":{"esignflow_request_id":"req-%d"},"recipient":{"id":"r1","email":"a@example.com","name":"A","status":"viewed","ip_address":"198.51.100.7","user_agent":"bench"}}}`,
			id, now.Format(time.RFC3339Nano), i%5000, now.Format(time.RFC3339Nano), i%5000))
		h := http.Header{"Content-Type": {"application/json"}}
		stdwebhook.SetHeaders(h, []stdwebhook.Secret{key}, id, now, body)
		out[i] = signedWebhook{body: body, h: h}
	}
	return out
}

// drive posts every request with cfg.Concurrency workers, bounded by
// cfg.Duration, and measures.
func drive(ctx context.Context, name, url string, reqs []signedWebhook, cfg IngressConfig) IngressResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var next atomic.Int64
	var errs atomic.Int64
	lat := make([]time.Duration, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqs[i].body))
				req.Header = reqs[i].h.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := min(int(next.Load()), len(reqs))
	done := append([]time.Duration(nil), lat[:n]...)
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	r := IngressResult{Target: name, Requests: n, Errors: int(errs.Load()), Elapsed: elapsed, PerSec: float64(n) / elapsed.Seconds()}
	if n > 0 {
		r.P50, r.P99 = done[n/2], done[n*99/100]
	}
	return r
}
