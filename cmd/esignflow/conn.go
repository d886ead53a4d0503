package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/esignflow/esignflow/internal/buildinfo"
	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/schemas"
)

// conn holds the flags every service shares: how to reach Kafka, the
// Schema Registry and Redis. Passwords come from files, never flags.
type conn struct {
	brokers          string
	saslMechanism    string
	saslUser         string
	saslPasswordFile string
	kafkaTLS         bool
	kafkaCAFile      string
	registry         string
	registryUser     string
	registryPassFile string
	redisURL         string
	redisCluster     bool
	redisPassFile    string
	compression      string // producing commands only; empty: the components' default
	topicPrefix      string
	connectTimeout   time.Duration
}

// Environment variables that give the connection flags their defaults; a
// flag on the command line wins.
const (
	envBrokers  = "ESIGNFLOW_BROKERS"
	envRegistry = "ESIGNFLOW_REGISTRY"
	envRedisURL = "ESIGNFLOW_REDIS_URL"
)

// fromEnv returns the value of the environment variable name when it is
// set and not empty, else def.
func fromEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// producing registers --kafka-compression, for the commands that produce.
func (c *conn) producing(fs flagRegistrar) *conn {
	fs.StringVar(&c.compression, "kafka-compression", compression.Default,
		"record batch `compression`: "+compression.Names+" (none and gzip are read by every client without a plugin; KafkaJS needs a codec package for snappy, lz4 and zstd)")
	return c
}

func connFlags(fs *flag.FlagSet, withRedis bool) *conn {
	c := &conn{}
	fs.StringVar(&c.brokers, "brokers", fromEnv(envBrokers, "127.0.0.1:9092"), "Kafka seed brokers, comma-separated `host:port` list (default from $"+envBrokers+" when set)")
	fs.StringVar(&c.saslMechanism, "kafka-sasl-mechanism", "", "Kafka SASL `mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (none when empty)")
	fs.StringVar(&c.saslUser, "kafka-sasl-user", "", "Kafka SASL `user`")
	fs.StringVar(&c.saslPasswordFile, "kafka-sasl-password-file", "", "`file` holding the Kafka SASL password")
	fs.BoolVar(&c.kafkaTLS, "kafka-tls", false, "connect to Kafka over TLS")
	fs.StringVar(&c.kafkaCAFile, "kafka-ca-file", "", "PEM `file` of CAs for Kafka TLS (system roots when empty)")
	fs.StringVar(&c.topicPrefix, "topic-prefix", "", "`prefix` before every esignflow topic name, and so before its registry subject (several installations on one cluster); consumer groups are set apart by --group")
	fs.StringVar(&c.registry, "registry", fromEnv(envRegistry, "http://127.0.0.1:8081"), "Schema Registry `URL` (default from $"+envRegistry+" when set)")
	fs.StringVar(&c.registryUser, "registry-user", "", "Schema Registry basic-auth `user`")
	fs.StringVar(&c.registryPassFile, "registry-password-file", "", "`file` holding the Schema Registry basic-auth password")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "give up with an error naming the address when Kafka, the Schema Registry or Redis does not answer within this `duration` at start")
	if withRedis {
		fs.StringVar(&c.redisURL, "redis-url", fromEnv(envRedisURL, "redis://127.0.0.1:6379/0"), "Redis `URL` (rediss:// for TLS; user in the URL; default from $"+envRedisURL+" when set)")
		fs.BoolVar(&c.redisCluster, "redis-cluster", false, "treat --redis-url as a Redis Cluster seed: redis://host:port?addr=host2:port2&addr=…; every key a batch touches shares one hash slot, so Cluster works")
		fs.StringVar(&c.redisPassFile, "redis-password-file", "", "`file` holding the Redis password")
	}
	return c
}

func readSecretFile(flagName, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *conn) brokerList() []string {
	var out []string
	for _, b := range strings.Split(c.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// clientOpts returns the options of a Kafka client of the command's own:
// the seed brokers, then SASL and TLS.
func (c *conn) clientOpts() ([]kgo.Opt, error) {
	base, err := c.kafkaOpts()
	if err != nil {
		return nil, err
	}
	return append([]kgo.Opt{kgo.SeedBrokers(c.brokerList()...)}, base...), nil
}

// kafkaOpts returns the client options for SASL and TLS.
func (c *conn) kafkaOpts() ([]kgo.Opt, error) {
	if len(c.brokerList()) == 0 {
		return nil, fmt.Errorf("%w: --brokers is empty", errUsage)
	}
	var opts []kgo.Opt
	if c.compression != "" {
		opt, err := compression.Opt(c.compression)
		if err != nil {
			return nil, fmt.Errorf("%w: --kafka-compression: %w", errUsage, err)
		}
		opts = append(opts, opt)
	}
	if c.kafkaTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.kafkaCAFile != "" {
			pem, err := os.ReadFile(c.kafkaCAFile)
			if err != nil {
				return nil, fmt.Errorf("--kafka-ca-file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--kafka-ca-file %s: no PEM certificate", c.kafkaCAFile)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.saslMechanism != "" {
		pass := ""
		if c.saslPasswordFile != "" {
			var err error
			if pass, err = readSecretFile("kafka-sasl-password-file", c.saslPasswordFile); err != nil {
				return nil, err
			}
		}
		switch strings.ToUpper(c.saslMechanism) {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.saslUser, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.saslUser, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.saslUser, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("%w: --kafka-sasl-mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", errUsage, c.saslMechanism)
		}
	}
	return opts, nil
}

// registryClient returns the Schema Registry client.
func (c *conn) registryClient() (*sr.Client, error) {
	opts := []sr.ClientOpt{sr.URLs(c.registry)}
	if c.registryUser != "" {
		pass := ""
		if c.registryPassFile != "" {
			var err error
			if pass, err = readSecretFile("registry-password-file", c.registryPassFile); err != nil {
				return nil, err
			}
		}
		opts = append(opts, sr.BasicAuth(c.registryUser, pass))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	return cl, nil
}

// errUnreachable means a server did not answer within --connect-timeout.
var errUnreachable = errors.New("no answer")

// timeout is --connect-timeout, or 10s when unset (a conn built by hand).
func (c *conn) timeout() time.Duration {
	if c.connectTimeout <= 0 {
		return 10 * time.Second
	}
	return c.connectTimeout
}

// checkKafka returns once a broker answers, or an error naming the
// brokers after --connect-timeout: a wrong --brokers fails at start
// instead of hanging the first produce or fetch.
func (c *conn) checkKafka(ctx context.Context) error {
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	for {
		err := cl.Ping(tctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-tctx.Done():
			return fmt.Errorf("kafka %s: %w: no broker answered within %s: %w", c.brokers, errUnreachable, c.timeout(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// codec checks that Kafka answers, registers the schemas (a producing
// command) and returns the codec. A registry that is still starting is
// retried until --connect-timeout; a registry that answers with a refusal
// (401, 409, …) fails at once.
func (c *conn) codec(ctx context.Context) (*schemas.Codec, error) {
	return c.newCodec(ctx)
}

// lookupCodec is codec for the commands that only read (watch, audit, dlq
// list): it looks the schemas up and changes nothing in the registry.
func (c *conn) lookupCodec(ctx context.Context) (*schemas.Codec, error) {
	return c.newCodec(ctx, schemas.LookupOnly())
}

func (c *conn) newCodec(ctx context.Context, opts ...schemas.Option) (*schemas.Codec, error) {
	if err := c.checkKafka(ctx); err != nil {
		return nil, err
	}
	cl, err := c.registryClient()
	if err != nil {
		return nil, err
	}
	opts = append([]schemas.Option{schemas.WithNames(schemas.Prefixed(c.topicPrefix))}, opts...)
	tctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	for {
		codec, err := schemas.NewCodec(tctx, cl, opts...)
		if err == nil {
			return codec, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var re *sr.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("schema registry %s: %w", c.registry, err)
		}
		select {
		case <-tctx.Done():
			return nil, fmt.Errorf("schema registry %s: %w within %s: %w", c.registry, errUnreachable, c.timeout(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// newRedis returns the client of --redis-url, a cluster client with
// --redis-cluster, and the addresses it names, for errors.
func (c *conn) newRedis() (redis.UniversalClient, string, error) {
	pass := func(p *string) error {
		if c.redisPassFile == "" {
			return nil
		}
		var err error
		*p, err = readSecretFile("redis-password-file", c.redisPassFile)
		return err
	}
	if !c.redisCluster {
		opt, err := redis.ParseURL(c.redisURL)
		if err != nil {
			return nil, "", fmt.Errorf("%w: --redis-url: %w", errUsage, err)
		}
		if err := pass(&opt.Password); err != nil {
			return nil, "", err
		}
		return redis.NewClient(opt), opt.Addr, nil
	}
	opt, err := redis.ParseClusterURL(c.redisURL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --redis-url (--redis-cluster): %w", errUsage, err)
	}
	// A cluster has database 0 only; ParseClusterURL ignores the path.
	if u, _ := url.Parse(c.redisURL); u.Path != "" && u.Path != "/" && u.Path != "/0" {
		return nil, "", fmt.Errorf("%w: --redis-url %s: a Redis Cluster has database 0 only", errUsage, u.Redacted())
	}
	if err := pass(&opt.Password); err != nil {
		return nil, "", err
	}
	return redis.NewClusterClient(opt), strings.Join(opt.Addrs, ","), nil
}

// redisClient returns the Redis client, a cluster client with
// --redis-cluster, and checks it answers within --connect-timeout.
func (c *conn) redisClient(ctx context.Context) (redis.UniversalClient, error) {
	cl, addr, err := c.newRedis()
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	for {
		err := cl.Ping(tctx).Err()
		if err == nil {
			return cl, nil
		}
		var refused redis.Error // an answer (wrong password, …): no use waiting
		if errors.As(err, &refused) {
			cl.Close()
			return nil, fmt.Errorf("redis %s: %w", addr, err)
		}
		if ctx.Err() != nil {
			cl.Close()
			return nil, ctx.Err()
		}
		select {
		case <-tctx.Done():
			cl.Close()
			return nil, fmt.Errorf("redis %s: %w within %s: %w", addr, errUnreachable, c.timeout(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// newRegistry returns a Prometheus registry with the Go and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	return reg
}

// serveOps serves /metrics, /healthz (the process is alive) and /readyz
// (ready answers nil within two seconds: the service can do its work) on
// addr until ctx ends. A nil ready is always ready. It returns once the
// listener is up, or the error of listening.
func serveOps(ctx context.Context, addr, flagName string, reg *prometheus.Registry, ready func(context.Context) error) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flagName, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(rctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
	go func() {
		<-ctx.Done()
		stop()
	}()
	return stop, nil
}

// services is what a long-running service connects to.
type services struct {
	kafka []kgo.Opt
	codec *schemas.Codec
	redis redis.UniversalClient // nil for a service without Redis
}

// connect checks the Kafka options, registers the schemas and, when the
// service has a --redis-url, connects to Redis. close releases it.
func (c *conn) connect(ctx context.Context) (*services, func(), error) {
	kopts, err := c.kafkaOpts()
	if err != nil {
		return nil, nil, err
	}
	codec, err := c.codec(ctx)
	if err != nil {
		return nil, nil, err
	}
	s := &services{kafka: kopts, codec: codec}
	if c.redisURL == "" {
		return s, func() {}, nil
	}
	if s.redis, err = c.redisClient(ctx); err != nil {
		return nil, nil, err
	}
	return s, func() { s.redis.Close() }, nil
}
