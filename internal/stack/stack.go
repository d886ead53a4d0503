// Package stack wires the whole of esignflow in one process on embedded
// infrastructure — franz-go's kfake as the Kafka broker (persisted under a
// data directory), srfake as the Schema Registry, miniredis (or a real
// Redis), the provider simulator — and runs ingress, processor, reconciler
// and sink against them, each on a real listening port. It is `esignflow
// dev`, and what the end-to-end, chaos and benchmark runs drive.
//
// The simulator plays one provider of the registry (Config.Provider) in
// that provider's dialect, and the services reach it through that
// provider's own client: with DocuSign, the DocuSign adapter against the
// simulator's DocuSign API.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/internal/buildinfo"
	"github.com/esignflow/esignflow/internal/devregistry"
	"github.com/esignflow/esignflow/internal/secrets"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// Config configures a Stack. The zero value runs everything on random
// loopback ports with nothing persisted.
type Config struct {
	// DataDir keeps the broker's log, the registry's schemas, the webhook
	// secret and the archive; empty keeps nothing (a temporary directory).
	DataDir string
	// Listen addresses; empty means 127.0.0.1 on a random port. HTTPAddr
	// is the ingress's webhook listener, APIAddr its API listener.
	KafkaAddr, RegistryAddr, RedisAddr, SimAddr, HTTPAddr, APIAddr string
	// Brokers uses this Kafka cluster (a real one) instead of the embedded
	// kfake broker; the stack creates its topics there if they are missing.
	Brokers []string
	// Namespace goes before every topic name, consumer group and
	// transactional id, so that several stacks share one cluster (tests on
	// the real broker); empty uses the names of the README.
	Namespace string
	// RedisURL uses a real Redis instead of the embedded one.
	RedisURL string
	// RedisClock is how often the embedded Redis's clock is moved on so
	// that TTLs expire, default 1s: each move sorts every key, so a short
	// one costs CPU in proportion to the data.
	RedisClock time.Duration
	// Partitions per topic, default 4.
	Partitions int32
	// Sim configures the simulator (its Addr, WebhookURL, dialect and
	// secrets are set by the stack).
	Sim sim.Config
	// Provider is the provider the simulator plays, in its dialect,
	// overriding the registry's default (the simulator's own standard
	// dialect). Requests that name no provider go to it.
	Provider string
	// Providers are further providers' clients (real ones, from their
	// flags), enabled beside the simulated one; their webhook secrets go
	// in the data directory's secrets directory.
	Providers map[string]provider.Provider
	// Reconciler timing (see reconciler.Config): defaults here are for a
	// demo — stale after 30s, scan every 5s, poll each envelope at most
	// every 10s, 3000 provider calls an hour in bursts of 500 (a demo's
	// simulator has no hourly limit), FAILED for "not found" after the
	// reconciler's default.
	StaleAfter, Interval, MinPollInterval, NotFoundAfter time.Duration
	PollRate                                             float64
	PollBurst                                            int
	// ProcessorBatch is the processor's MaxBatch (default its own).
	ProcessorBatch int
	// AdoptForeign is the processor's AdoptForeign: track the envelopes
	// esignflow did not create instead of ignoring their events.
	AdoptForeign bool
	// KafkaOpts are added to every component's Kafka clients.
	KafkaOpts []kgo.Opt
	// ProcessorCrash is passed to the processor (tests).
	ProcessorCrash func(processor.Point) bool
	Logger         *slog.Logger
}

// AddrError is a listen failure, naming the dev flag that sets the address.
type AddrError struct {
	Flag, Addr string
	Err        error
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("cannot listen on %s (change it with --%s): %v", e.Addr, e.Flag, e.Err)
}
func (e *AddrError) Unwrap() error { return e.Err }

// Endpoint is one listening part of the stack.
type Endpoint struct {
	Name, URL string
}

// Stack is the running system. Create it with New, run it with Run; the
// accessors are valid after Ready.
type Stack struct {
	cfg     Config
	log     *slog.Logger
	dataDir string
	tempDir bool
	ready   chan struct{}
	up      chan struct{} // closed when every component is started

	Cluster  *kfake.Cluster // nil with Config.Brokers
	Registry *srfake.Registry
	Codec    *schemas.Codec
	Redis    *redis.Client
	Mini     *miniredis.Miniredis // nil with a real Redis
	Store    *store.Store
	Sim      *sim.Simulator
	// SimClient is the simulated provider's client (of Config.Provider).
	SimClient provider.Provider
	Ingress   *ingress.Ingress
	apiToken  string
	Archive   sink.Dir
	Metrics   *prometheus.Registry
	Brokers   []string
	endpoints []Endpoint

	procMu     sync.Mutex
	procLife   *sync.Cond // signalled when a life starts or the processor stops for good
	procCancel context.CancelFunc
	procDone   chan error
	procOver   bool

	unlockDir func() // releases the data directory's lock

	providers map[string]provider.Provider // the enabled ones, by name (set before the processor starts)
}

// New returns a Stack for cfg; nothing starts until Run.
func New(cfg Config) (*Stack, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 30 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.MinPollInterval <= 0 {
		cfg.MinPollInterval = 10 * time.Second
	}
	if cfg.PollBurst <= 0 {
		cfg.PollBurst = 500
	}
	if cfg.PollRate <= 0 {
		cfg.PollRate = 3000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Provider == "" {
		cfg.Provider = registry.Default()
	}
	if !registry.CanSimulate(cfg.Provider) {
		_, err := registry.Simulate(cfg.Provider, registry.SimulateConfig{})
		return nil, err
	}
	for _, a := range []*string{&cfg.KafkaAddr, &cfg.RegistryAddr, &cfg.RedisAddr, &cfg.SimAddr, &cfg.HTTPAddr, &cfg.APIAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	s := &Stack{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), up: make(chan struct{})}
	s.procLife = sync.NewCond(&s.procMu)
	return s, nil
}

// Ready is closed once every component has started.
func (s *Stack) Ready() <-chan struct{} { return s.ready }

// Endpoints lists what listens where, in start order.
func (s *Stack) Endpoints() []Endpoint { return s.endpoints }

// IngressURL is the ingress's webhook listener's base URL.
func (s *Stack) IngressURL() string { return "http://" + s.Ingress.Addr() }

// APIURL is the ingress's API listener's base URL (signing requests,
// /metrics, /readyz).
func (s *Stack) APIURL() string { return "http://" + s.Ingress.APIAddr() }

// APIToken is the API bearer token of tenant "dev", kept in the data
// directory's api-tokens file.
func (s *Stack) APIToken() string { return s.apiToken }

// RegistryURL is the Schema Registry's URL.
func (s *Stack) RegistryURL() string { return s.endpoints[1].URL }

func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &AddrError{Flag: flag, Addr: addr, Err: err}
	}
	return ln, nil
}

// Run starts everything in dependency order — broker, registry, Redis,
// simulator, then sink, processor, reconciler and ingress — and stops it
// in reverse when ctx ends. A component that fails stops the rest.
func (s *Stack) Run(ctx context.Context) (err error) {
	if err := s.prepareDir(); err != nil {
		return err
	}
	defer s.unlockDir()
	if s.tempDir {
		defer os.RemoveAll(s.dataDir)
	}
	var stops []func() // reverse order on the way out
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	// Kafka.
	if len(s.cfg.Brokers) > 0 {
		s.Brokers = s.cfg.Brokers
		s.endpoints = append(s.endpoints, Endpoint{"kafka (external)", strings.Join(s.Brokers, ",")})
	} else {
		kln, err := listen("kafka-addr", s.cfg.KafkaAddr)
		if err != nil {
			return err
		}
		s.Cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(s.dataDir, "kafka")),
			kfake.ListenFn(func(string, string) (net.Listener, error) { return kln, nil }),
			kfake.DefaultNumPartitions(int(s.cfg.Partitions)))
		if err != nil {
			kln.Close()
			return fmt.Errorf("kafka: %w", err)
		}
		stops = append(stops, s.Cluster.Close)
		s.Brokers = s.Cluster.ListenAddrs()
		s.endpoints = append(s.endpoints, Endpoint{"kafka", s.Brokers[0]})
	}

	// Schema Registry, with its schemas persisted so ids survive restarts.
	if err := s.startRegistry(ctx, &stops); err != nil {
		return err
	}

	// Redis.
	if err := s.startRedis(ctx, &stops); err != nil {
		return err
	}

	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.Brokers...)}, s.cfg.KafkaOpts...)...)
	if err != nil {
		return err
	}
	err = topics.Ensure(ctx, admin, topics.Config{Partitions: s.cfg.Partitions, Names: s.Codec.Topics()})
	admin.Close()
	if err != nil {
		return err
	}

	// The simulated provider's keys and webhook secret: generated once
	// into the data dir.
	secretsDir := filepath.Join(s.dataDir, "secrets")
	simulated, err := registry.Simulate(s.cfg.Provider, registry.SimulateConfig{Dir: s.dataDir, SecretsDir: secretsDir})
	if err != nil {
		return err
	}
	keys, err := secrets.Open(secretsDir, registry.DecodeSecret, s.log)
	if err != nil {
		return err
	}

	group, gctx := newGroup(ctx, s.log)
	defer func() {
		if werr := group.stop(); err == nil && werr != nil && !errors.Is(werr, context.Canceled) {
			err = werr
		}
	}()
	group.go_("secrets", func(ctx context.Context) error { return keys.Run(ctx, 2*time.Second) })

	// Ingress listener first: the simulator needs its URL.
	hln, err := listen("http-addr", s.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	simCfg := s.cfg.Sim
	simCfg.Listener, err = listen("sim-addr", s.cfg.SimAddr)
	if err != nil {
		hln.Close()
		return err
	}
	simCfg.WebhookURL = "http://" + hln.Addr().String() + "/webhooks/" + simulated.Provider
	simulated.Configure(&simCfg)
	simCfg.Logger = s.log
	if !s.tempDir {
		simCfg.StateFile = filepath.Join(s.dataDir, "sim-state.json")
	}
	if s.Sim, err = sim.New(simCfg); err != nil {
		hln.Close()
		return err
	}
	group.go_("sim", s.Sim.Run)
	if err := waitBoth(ctx, gctx, s.Sim.Ready()); err != nil {
		hln.Close()
		return group.stop()
	}
	s.endpoints = append(s.endpoints, Endpoint{"simulator", s.Sim.URL()})
	s.Metrics = prometheus.NewRegistry()
	s.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	// The simulator is local: a call that takes a second has timed out.
	if s.SimClient, err = simulated.Connect(s.Sim.URL(), time.Second, registry.Options{Metrics: s.Metrics, Logger: s.log}); err != nil {
		hln.Close()
		return err
	}
	clients := map[string]provider.Provider{s.cfg.Provider: s.SimClient}
	enabled := []string{s.cfg.Provider}
	pollIntervals := map[string]time.Duration{}
	for _, name := range sortedNames(s.cfg.Providers) {
		if name == s.cfg.Provider {
			continue // the simulator plays it
		}
		clients[name] = s.cfg.Providers[name]
		enabled = append(enabled, name)
		if p, ok := registry.Lookup(name); ok && p.MinPollInterval > 0 {
			pollIntervals[name] = p.MinPollInterval
		}
	}
	s.providers = clients
	downloaders := map[string]sink.Downloader{}
	pollers := map[string]reconciler.Poller{}
	for name, c := range clients {
		downloaders[name], pollers[name] = c, c
	}

	// Sink.
	s.Archive = sink.Dir{Root: filepath.Join(s.dataDir, "archive")}
	sk, err := sink.New(sink.Config{Brokers: s.Brokers, KafkaOpts: s.cfg.KafkaOpts, Codec: s.Codec, Archive: s.Archive, Group: s.cfg.Namespace + "esignflow-sink",
		Downloaders: downloaders, InstanceID: "dev", Metrics: s.Metrics, Logger: s.log})
	if err != nil {
		hln.Close()
		return err
	}
	group.go_("sink", sk.Run)

	// Processor (restartable, for chaos).
	group.go_("processor", func(ctx context.Context) error { return s.runProcessor(ctx, s.Metrics) })

	// Reconciler.
	rec, err := reconciler.New(reconciler.Config{Brokers: s.Brokers, KafkaOpts: s.cfg.KafkaOpts, Codec: s.Codec, Store: s.Store,
		Pollers: pollers, PollIntervals: pollIntervals, StaleAfter: s.cfg.StaleAfter, Interval: s.cfg.Interval,
		MinPollInterval: s.cfg.MinPollInterval, Rate: s.cfg.PollRate, Burst: s.cfg.PollBurst, NotFoundAfter: s.cfg.NotFoundAfter, InstanceID: "dev", Metrics: s.Metrics, Logger: s.log})
	if err != nil {
		hln.Close()
		return err
	}
	group.go_("reconciler", rec.Run)

	// Ingress last: once it answers, everything behind it runs. Its API
	// takes the token of tenant "dev" from the data directory.
	tokensPath := filepath.Join(s.dataDir, "api-tokens")
	if s.apiToken, err = ingress.EnsureTokenFile(tokensPath, "dev"); err != nil {
		hln.Close()
		return err
	}
	tokens, err := ingress.OpenTokens(tokensPath, s.log)
	if err != nil {
		hln.Close()
		return err
	}
	group.go_("api-tokens", func(ctx context.Context) error { return tokens.Run(ctx, 2*time.Second) })
	aln, err := listen("api-addr", s.cfg.APIAddr)
	if err != nil {
		hln.Close()
		return err
	}
	s.Ingress, err = ingress.New(ingress.Config{Listener: hln, APIListener: aln, Tokens: tokens, Providers: enabled,
		Topics: topics.Config{Partitions: s.cfg.Partitions}, Brokers: s.Brokers, KafkaOpts: s.cfg.KafkaOpts, Codec: s.Codec,
		Redis: s.Redis, KeyPrefix: "esf:", Secrets: keys, Metrics: s.Metrics, Gatherer: s.Metrics, Logger: s.log,
		Ready: func(context.Context) error {
			select {
			case <-s.up:
				return nil
			default:
				return errors.New("esignflow dev is still starting")
			}
		}})
	if err != nil {
		hln.Close()
		aln.Close()
		return err
	}
	group.go_("ingress", s.Ingress.Run)
	if err := waitBoth(ctx, gctx, s.Ingress.Ready()); err != nil {
		return group.stop()
	}
	s.endpoints = append(s.endpoints, Endpoint{"ingress webhooks", s.IngressURL()}, Endpoint{"ingress API", s.APIURL()})
	close(s.up)
	close(s.ready)
	select {
	case <-ctx.Done(): // shut down
	case <-gctx.Done(): // a component failed
	}
	return group.stop()
}

func (s *Stack) prepareDir() error {
	s.dataDir = s.cfg.DataDir
	if s.dataDir == "" {
		d, err := os.MkdirTemp("", "esignflow-stack-")
		if err != nil {
			return err
		}
		s.dataDir, s.tempDir = d, true
	}
	if err := os.MkdirAll(s.dataDir, 0o750); err != nil {
		return fmt.Errorf("data dir %s: %w", s.dataDir, err)
	}
	// One stack per data directory: two would share a broker log and
	// state files. Released when Run returns (see unlockDir).
	unlock, err := lockDir(s.dataDir)
	if err != nil {
		return err
	}
	s.unlockDir = unlock
	return nil
}

// Namespace is the prefix of the stack's topics and groups.
func (s *Stack) Namespace() string { return s.cfg.Namespace }

// DataDir is where the stack keeps its state.
func (s *Stack) DataDir() string { return s.dataDir }

type savedSchema struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

func (s *Stack) startRegistry(ctx context.Context, stops *[]func()) error {
	rln, err := listen("registry-addr", s.cfg.RegistryAddr)
	if err != nil {
		return err
	}
	s.Registry = srfake.NewRegistry()
	path := filepath.Join(s.dataDir, "registry.json")
	if raw, err := os.ReadFile(path); err == nil {
		var saved []savedSchema
		if err := json.Unmarshal(raw, &saved); err != nil {
			rln.Close()
			return fmt.Errorf("registry state %s: %w", path, err)
		}
		for _, sc := range saved {
			s.Registry.SeedSchema(sc.Subject, sc.Version, sc.ID, sr.Schema{Schema: sc.Schema, Type: sr.TypeAvro})
		}
	}
	// Compatible refuses an incompatible schema with 409, as Confluent does.
	srv := &http.Server{Handler: devregistry.Compatible(s.Registry.Handler()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(rln) }()
	url := "http://" + rln.Addr().String()
	client, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return err
	}
	save := func() {
		all, err := client.AllSchemas(context.Background())
		if err != nil {
			s.log.Warn("saving registry state", "err", err)
			return
		}
		out := make([]savedSchema, 0, len(all))
		for _, ss := range all {
			out = append(out, savedSchema{ss.Subject, ss.Version, ss.ID, ss.Schema.Schema})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		raw, _ := json.MarshalIndent(out, "", "  ")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, raw, 0o640); err == nil {
			_ = os.Rename(tmp, path)
		}
	}
	*stops = append(*stops, func() {
		save()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	if s.Codec, err = schemas.NewCodec(ctx, client, schemas.WithNames(schemas.Prefixed(s.cfg.Namespace))); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	save()
	s.endpoints = append(s.endpoints, Endpoint{"schema-registry", url})
	return nil
}

func (s *Stack) startRedis(ctx context.Context, stops *[]func()) error {
	if s.cfg.RedisURL != "" {
		opt, err := redis.ParseURL(s.cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		s.Redis = redis.NewClient(opt)
		s.endpoints = append(s.endpoints, Endpoint{"redis", s.cfg.RedisURL})
	} else {
		s.Mini = miniredis.NewMiniRedis()
		if err := s.Mini.StartAddr(s.cfg.RedisAddr); err != nil {
			return &AddrError{Flag: "redis-addr", Addr: s.cfg.RedisAddr, Err: err}
		}
		// miniredis keeps time only when told: advance it with the wall
		// clock so that TTLs (poll leases, dedup records, idempotency
		// keys) expire as on a real server.
		every := s.cfg.RedisClock
		if every <= 0 {
			every = time.Second
		}
		tick := time.NewTicker(every)
		quit := make(chan struct{})
		go func() {
			last := time.Now()
			for {
				select {
				case <-quit:
					return
				case now := <-tick.C:
					s.Mini.FastForward(now.Sub(last))
					last = now
				}
			}
		}()
		*stops = append(*stops, s.Mini.Close, func() { tick.Stop(); close(quit) })
		s.Redis = redis.NewClient(&redis.Options{Addr: s.Mini.Addr()})
		s.endpoints = append(s.endpoints, Endpoint{"redis (embedded, in memory)", "redis://" + s.Mini.Addr()})
	}
	*stops = append(*stops, func() { s.Redis.Close() })
	if err := s.Redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	var err error
	s.Store, err = store.New(store.Config{Client: s.Redis})
	return err
}

// runProcessor runs the processor, and again whenever RestartProcessor
// stops it, until ctx ends.
func (s *Stack) runProcessor(ctx context.Context, reg prometheus.Registerer) error {
	defer func() {
		s.procMu.Lock()
		s.procOver = true
		s.procLife.Broadcast()
		s.procMu.Unlock()
	}()
	for {
		creators := map[string]processor.Creator{}
		for name, c := range s.providers {
			creators[name] = c
		}
		p, err := processor.New(processor.Config{Brokers: s.Brokers, KafkaOpts: s.cfg.KafkaOpts, Codec: s.Codec, Store: s.Store,
			Providers: creators, DefaultProvider: s.cfg.Provider, InstanceID: "dev", MaxBatch: s.cfg.ProcessorBatch, AdoptForeign: s.cfg.AdoptForeign,
			Group:  s.cfg.Namespace + "esignflow-processor",
			Topics: topics.Config{Partitions: s.cfg.Partitions}, Metrics: reg, Logger: s.log,
			Crash: s.cfg.ProcessorCrash})
		if err != nil {
			return err
		}
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		s.procMu.Lock()
		s.procCancel, s.procDone = cancel, done
		s.procLife.Broadcast()
		s.procMu.Unlock()
		err = p.Run(pctx)
		restarted := pctx.Err() != nil
		cancel()
		done <- err
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !restarted && !errors.Is(err, processor.ErrCrashed) {
			return err
		}
		s.log.Info("processor restarting")
	}
}

// RestartProcessor stops the processor as if its process died — its open
// transaction is left for the next life to fence — and starts it again.
//
// Each call stops one life: a call made while the previous restart is
// still starting the next life waits for it.
func (s *Stack) RestartProcessor() {
	s.procMu.Lock()
	for s.procCancel == nil && !s.procOver {
		s.procLife.Wait()
	}
	cancel, done := s.procCancel, s.procDone
	s.procCancel, s.procDone = nil, nil
	s.procMu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// sortedNames returns m's keys in order.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Provider is the name of the provider the simulator plays.
func (s *Stack) Provider() string { return s.cfg.Provider }

// waitBoth waits for ch, or for either context to end.
func waitBoth(a, b context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-a.Done():
		return a.Err()
	case <-b.Done():
		return b.Err()
	}
}
