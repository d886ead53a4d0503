// Package fakes starts the infrastructure that tests and benchmarks run
// esignflow on: a kfake broker (or the shared real broker of a real-server
// run) with esignflow's topics, an srfake registry with esignflow's
// schemas, and the provider simulator.
package fakes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/kafkatest"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// Cluster starts a one-broker kfake cluster with esignflow's topics, each
// with partitions partitions. The caller closes it.
func Cluster(ctx context.Context, partitions int32) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	if err := EnsureTopics(ctx, c.ListenAddrs(), schemas.DefaultNames(), partitions); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// EnsureTopics creates the topics names on brokers, each with partitions
// partitions.
func EnsureTopics(ctx context.Context, brokers []string, names schemas.Names, partitions int32) error {
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := topics.Ensure(ctx, admin, topics.Config{Partitions: partitions, Names: names}); err != nil {
		return fmt.Errorf("fakes: %w", err)
	}
	return nil
}

// Registry starts an srfake registry and returns the codec registered on
// it, bound to the topic names opts give. An unknown schema id is poison
// after a quarter of a second here (the default minute would make every
// poison-record test wait it out); opts may say otherwise. The caller
// closes the registry.
func Registry(ctx context.Context, opts ...schemas.Option) (*srfake.Registry, *schemas.Codec, error) {
	opts = append([]schemas.Option{schemas.WithUnknownSchemaGrace(250 * time.Millisecond)}, opts...)
	reg := srfake.New()
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		reg.Close()
		return nil, nil, err
	}
	codec, err := schemas.NewCodec(ctx, cl, opts...)
	if err != nil {
		reg.Close()
		return nil, nil, err
	}
	return reg, codec, nil
}

// Kafka is one test's Kafka: the shared real broker when
// ESIGNFLOW_TEST_KAFKA_BROKERS names one, otherwise a kfake cluster of the
// test's own. Either way the test's topics, consumer groups and
// transactional ids carry Prefix, so that tests sharing a broker never see
// each other's records or join each other's groups.
type Kafka struct {
	Brokers []string
	// Fake is the kfake cluster, nil on a real broker: a test that needs
	// kfake's fault injection (ControlKey) skips itself without it.
	Fake *kfake.Cluster
	// Prefix is this test's prefix for topics and groups.
	Prefix string
	Names  schemas.Names
}

// Real says whether the tests run on a real broker.
func Real() bool { return len(kafkatest.Brokers()) > 0 }

// Group returns the consumer group name base behind the test's prefix.
func (k *Kafka) Group(base string) string { return k.Prefix + base }

// NewKafka returns a Kafka for t with esignflow's topics created, each
// with partitions partitions; a kfake cluster is closed when t ends.
func NewKafka(t testing.TB, partitions int32) *Kafka {
	t.Helper()
	k := &Kafka{Prefix: prefixFor(t)}
	k.Names = schemas.Prefixed(k.Prefix)
	if Real() {
		k.Brokers = kafkatest.Brokers()
		// The shared broker outlives the test: leave it as found.
		t.Cleanup(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
			if err != nil {
				return
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topics.All(k.Names)...)
		})
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		k.Fake, k.Brokers = c, c.ListenAddrs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, k.Brokers, k.Names, partitions); err != nil {
		t.Fatal(err)
	}
	return k
}

// prefixFor is a topic prefix unique to this run of t: Kafka topic names
// allow letters, digits, '.', '_' and '-'.
func prefixFor(t testing.TB) string {
	name := []byte(t.Name())
	for i, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			name[i] = '_'
		}
	}
	if len(name) > 60 {
		name = name[:60]
	}
	return fmt.Sprintf("t.%s.%08x.", name, rand.Uint32())
}

// T starts a test's Kafka (NewKafka) and an srfake registry whose codec is
// bound to the test's topic names, closing them when the test ends.
func T(t testing.TB, partitions int32) (*Kafka, *schemas.Codec) {
	t.Helper()
	k := NewKafka(t, partitions)
	reg, codec, err := Registry(context.Background(), schemas.WithNames(k.Names))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return k, codec
}

// Sim starts a simulator for a test (on 127.0.0.1 at a free port unless
// cfg.Addr says otherwise) and stops it when the test ends; the test fails
// if it does not start or Run ends with an error.
func Sim(t testing.TB, cfg sim.Config) *sim.Simulator {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	Start(t, s)
	return s
}

// Runner is a long-running component that says when it is ready.
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs r for a test until the test ends, and returns once r is
// ready. The test fails if r does not get ready within a minute, or if
// Run ends with an error.
func Start(t testing.TB, r Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%T.Run: %v", r, err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-done:
		t.Fatalf("%T did not start: %v", r, err)
	case <-time.After(time.Minute):
		t.Fatalf("%T did not start in a minute", r)
	}
}

// StackKafka returns what a test's stack.Config takes to run on the shared
// real broker under a namespace of the test's own (Brokers, Namespace), or
// nils for the stack's embedded kfake broker.
func StackKafka(t testing.TB) (brokers []string, namespace string) {
	if Real() {
		return kafkatest.Brokers(), prefixFor(t)
	}
	return nil, ""
}

// RegistryWrites records every request to an srfake registry that would
// change it (PUT, DELETE, POST …/versions): install Intercept with
// srfake.Registry.Intercept; tests assert that read-only tools send none.
type RegistryWrites struct {
	mu   sync.Mutex
	seen []string
}

// Intercept records r if it writes, and lets srfake answer it.
func (w *RegistryWrites) Intercept(_ http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPut || r.Method == http.MethodDelete || (r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/versions")) {
		w.mu.Lock()
		w.seen = append(w.seen, r.Method+" "+r.URL.Path)
		w.mu.Unlock()
	}
	return false
}

// Take returns the writes recorded since the last Take.
func (w *RegistryWrites) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.seen
	w.seen = nil
	return seen
}
