package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/reconciler"
)

// simulatable are the providers the simulator can play.
func simulatable() []string {
	var out []string
	for _, p := range registry.All() {
		if registry.CanSimulate(p.Name) {
			out = append(out, p.Name)
		}
	}
	return out
}

// reconcilerFlags are the reconciler's own flags, shared with dev.
type reconcilerFlags struct {
	staleAfter, interval, minPoll, notFoundAfter time.Duration
	rate                                         float64
	burst                                        int
}

func registerReconcilerFlags(fs flagRegistrar, staleAfter, interval, minPoll time.Duration) *reconcilerFlags {
	f := &reconcilerFlags{}
	fs.DurationVar(&f.staleAfter, "stale-after", staleAfter, "poll envelopes not updated for this `duration` (the expected turnaround)")
	fs.DurationVar(&f.interval, "interval", interval, "`duration` between scans for stale envelopes")
	fs.DurationVar(&f.minPoll, "min-poll-interval", minPoll, "least `duration` between two polls of one envelope, across replicas")
	fs.Float64Var(&f.rate, "rate", reconciler.DefaultRate, "provider calls allowed per hour per provider account, shared by every replica (a token bucket in Redis, one per account; a batch call is one); with --burst at most rate+burst calls in any hour: leave the provider's hourly limit room for creates and downloads")
	fs.IntVar(&f.burst, "burst", reconciler.DefaultBurst, "provider calls allowed in a burst per provider account, shared by every replica")
	fs.DurationVar(&f.notFoundAfter, "not-found-after", time.Hour, "publish an envelope as FAILED only once its provider has not known it for this `duration` (one \"not found\" is not a verdict: providers' indexes lag)")
	return f
}

func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("dev", e, "Run the whole system in one process: embedded Kafka (kfake), Schema Registry (srfake), Redis (miniredis)\nand the provider simulator, with ingress, processor, reconciler and sink, each on a real port.")
	dataDir := fs.String("data-dir", "./.esignflow", "`directory` for the broker's log, schemas, the webhook secret and the archive")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "embedded Kafka listen `address` (unless --brokers)")
	bk := registerBenchKafka(fs)
	fs.Lookup("brokers").Usage = "use this real Kafka cluster (comma-separated `host:port` list) instead of the embedded broker; its topics are created if missing"
	registryAddr := fs.String("registry-addr", "127.0.0.1:8081", "embedded Schema Registry listen `address`")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6380", "embedded Redis listen `address` (unless --redis-url)")
	redisURL := fs.String("redis-url", "", "use this real Redis `URL` instead of the embedded one")
	partitions := fs.Int("partitions", 4, "`partitions` per topic")
	maxBatch := fs.Int("max-batch", 2000, "processor: most `records` per transaction")
	adopt := fs.Bool("adopt-foreign-envelopes", false, "processor: track the envelopes esignflow did not create as foreign envelopes instead of ignoring their events")
	simulated := fs.String("provider", registry.Default(), "`provider` the simulator plays, in that provider's dialect ("+strings.Join(simulatable(), ", ")+"); requests that name none go to it")
	pv := registry.RegisterFlags(fs, false)
	buildSim := simFlags(fs, "sim-")
	fs.Lookup("sim-addr").Value.Set("127.0.0.1:8090")
	ing := registerIngressAddrs(fs)
	rf := registerReconcilerFlags(fs, 30*time.Second, 5*time.Second, 10*time.Second)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	simCfg, err := buildSim()
	if err != nil {
		return err
	}
	brokers, kopts, err := bk.parse()
	if err != nil {
		return err
	}
	if !registry.CanSimulate(*simulated) {
		return fmt.Errorf("%w: --provider %q: the simulator plays %s", errUsage, *simulated, strings.Join(simulatable(), ", "))
	}
	for _, name := range pv.Enabled() {
		if name == *simulated {
			return fmt.Errorf("%w: --provider %s runs the simulator as %s; its credential flags are for the real %s (give one or the other)", errUsage, name, name, name)
		}
	}
	// Real providers enabled by their flags run beside the simulated one.
	real, err := pv.Open(ctx, registry.Options{Logger: e.log})
	if err != nil {
		return err
	}
	st, err := stack.New(stack.Config{Provider: *simulated, Providers: real,
		DataDir: *dataDir, KafkaAddr: *kafkaAddr, Brokers: brokers, KafkaOpts: kopts, RegistryAddr: *registryAddr, RedisAddr: *redisAddr, RedisURL: *redisURL,
		SimAddr: simCfg.Addr, HTTPAddr: ing.httpAddr, APIAddr: ing.apiAddr, Partitions: int32(*partitions), Sim: simCfg, ProcessorBatch: *maxBatch, AdoptForeign: *adopt,
		StaleAfter: rf.staleAfter, Interval: rf.interval, MinPollInterval: rf.minPoll, PollRate: rf.rate, PollBurst: rf.burst, NotFoundAfter: rf.notFoundAfter, Logger: e.log,
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	select {
	case err := <-done:
		var ae *stack.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return err
	case <-st.Ready():
	}
	printBanner(e.stdout, st)
	return <-done
}

// ingressAddrs are dev's ingress listen addresses.
type ingressAddrs struct{ httpAddr, apiAddr string }

// registerIngressAddrs registers the ingress's two addresses on dev.
func registerIngressAddrs(fs flagRegistrar) *ingressAddrs {
	a := &ingressAddrs{}
	fs.StringVar(&a.httpAddr, "http-addr", "127.0.0.1:8080", "ingress webhook listen `address` (POST /webhooks/{provider} only)")
	fs.StringVar(&a.apiAddr, "api-addr", "127.0.0.1:8079", "ingress API listen `address` (signing requests with the dev token, /metrics, /readyz)")
	return a
}

// printBanner says what runs where and gives commands to try, with the
// addresses actually in use: copied as printed, they reach this stack.
func printBanner(w io.Writer, st *stack.Stack) {
	fmt.Fprintf(w, "esignflow dev is up (data in %s)\n", st.DataDir())
	for _, ep := range st.Endpoints() {
		fmt.Fprintf(w, "  %-28s %s\n", ep.Name, ep.URL)
	}
	api := st.APIURL()
	fmt.Fprintf(w, "  %-28s %s/metrics, %s/readyz\n", "metrics and readiness", api, api)
	fmt.Fprintf(w, "  %-28s %s   (in its dialect)\n", "simulated provider", st.Provider())
	fmt.Fprintf(w, "  %-28s %s/secrets/%s\n", "webhook secret", st.DataDir(), st.Provider())
	fmt.Fprintf(w, "  %-28s %s   (tenant dev, in %s)\n", "API token", st.APIToken(), filepath.Join(st.DataDir(), "api-tokens"))
	conn := fmt.Sprintf("--brokers %s --registry %s", strings.Join(st.Brokers, ","), st.RegistryURL())
	if ns := st.Namespace(); ns != "" {
		conn += " --topic-prefix " + ns
	}
	fmt.Fprintln(w, "Try:")
	fmt.Fprintf(w, "  esignflow request send %s --demo 5\n", conn)
	fmt.Fprintf(w, "  esignflow watch %s --from-beginning\n", conn)
	fmt.Fprintf(w, "  curl -sS -H 'Authorization: Bearer %s' -H 'Idempotency-Key: try-1' \\\n", st.APIToken())
	fmt.Fprintf(w, "       -d '{\"documents\":[{\"name\":\"nda.pdf\",\"content\":\"JVBERi0xLjQKJSVFT0YK\"}],\"recipients\":[{\"id\":\"r1\",\"name\":\"Ann\",\"email\":\"ann@example.com\"}]}' \\\n")
	fmt.Fprintf(w, "       %s/v1/signing-requests\n", api)
	fmt.Fprintf(w, "  curl -sS -H 'Authorization: Bearer %s' %s/v1/signing-requests/dev:try-1\n", st.APIToken(), api)
	fmt.Fprintln(w, "Ctrl-C stops.")
}
