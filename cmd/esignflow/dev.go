package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/esignflow/esignflow/internal/stack"
)

// reconcilerFlags are the reconciler's own flags, shared with dev.
type reconcilerFlags struct {
	staleAfter, interval, minPoll time.Duration
	rate                          float64
	burst                         int
}

func registerReconcilerFlags(fs flagRegistrar, staleAfter, interval, minPoll time.Duration) *reconcilerFlags {
	f := &reconcilerFlags{}
	fs.DurationVar(&f.staleAfter, "stale-after", staleAfter, "poll envelopes not updated for this `duration` (the expected turnaround)")
	fs.DurationVar(&f.interval, "interval", interval, "`duration` between scans for stale envelopes")
	fs.DurationVar(&f.minPoll, "min-poll-interval", minPoll, "least `duration` between two polls of one envelope, across replicas")
	fs.Float64Var(&f.rate, "rate", 3000, "provider polls allowed per hour (token bucket)")
	fs.IntVar(&f.burst, "burst", 500, "polls allowed in a burst")
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
	buildSim := simFlags(fs, "sim-")
	fs.Lookup("sim-addr").Value.Set("127.0.0.1:8090")
	ing := registerIngressOnlyAddr(fs)
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
	st, err := stack.New(stack.Config{
		DataDir: *dataDir, KafkaAddr: *kafkaAddr, Brokers: brokers, KafkaOpts: kopts, RegistryAddr: *registryAddr, RedisAddr: *redisAddr, RedisURL: *redisURL,
		SimAddr: simCfg.Addr, HTTPAddr: *ing, Partitions: int32(*partitions), Sim: simCfg, ProcessorBatch: *maxBatch,
		StaleAfter: rf.staleAfter, Interval: rf.interval, MinPollInterval: rf.minPoll, PollRate: rf.rate, Logger: e.log,
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
	fmt.Fprintf(e.stdout, "esignflow dev is up (data in %s)\n", st.DataDir())
	for _, ep := range st.Endpoints() {
		fmt.Fprintf(e.stdout, "  %-28s %s\n", ep.Name, ep.URL)
	}
	fmt.Fprintf(e.stdout, "  %-28s %s/metrics, %s/readyz\n", "metrics and readiness", st.IngressURL(), st.IngressURL())
	fmt.Fprintf(e.stdout, "  %-28s %s/secrets/sim\n", "webhook secret", st.DataDir())
	fmt.Fprintln(e.stdout, "Try: esignflow request send --demo 5   and   esignflow watch --from-beginning   (Ctrl-C stops)")
	return <-done
}

// registerIngressOnlyAddr registers the ingress address on dev.
func registerIngressOnlyAddr(fs flagRegistrar) *string {
	var addr string
	fs.StringVar(&addr, "http-addr", "127.0.0.1:8080", "ingress listen `address` (webhooks, signing requests, /metrics, /readyz)")
	return &addr
}
