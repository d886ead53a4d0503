package stack_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/internal/buildinfo"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/sink"
)

// names records the fully-qualified name of every metric registered
// through it, label values observed or not.
type names struct {
	prometheus.Registerer
	seen map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n *names) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n.seen[m[1]] = true
		}
	}
	return n.Registerer.Register(c)
}

func (n *names) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := n.Register(c); err != nil {
			panic(err)
		}
	}
}

// Every metric a query of deploy/grafana/esignflow.json names is one the
// components register.
func TestDashboardMetricsExist(t *testing.T) {
	k, codec := fakes.T(t, 2)
	rt := redistest.New(t)
	rc := rt.Client
	st, err := store.New(store.Config{Client: rc, Prefix: rt.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	reg := &names{Registerer: prometheus.NewRegistry(), seen: map[string]bool{}}
	reg.MustRegister(buildinfo.Collector())
	s := fakes.Sim(t, sim.Config{Step: time.Hour})
	simc, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := processor.New(processor.Config{Brokers: k.Brokers, Codec: codec, Store: st, Providers: map[string]processor.Creator{"sim": simc}, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(sink.Config{Brokers: k.Brokers, Codec: codec, Archive: sink.Dir{Root: t.TempDir()}, Downloaders: map[string]sink.Downloader{"sim": simc}, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconciler.New(reconciler.Config{Brokers: k.Brokers, Codec: codec, Store: st, Pollers: map[string]reconciler.Poller{"sim": simc}, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := ingress.New(ingress.Config{Brokers: k.Brokers, Codec: codec, Redis: rc, Secrets: noKeys{}, InsecureNoAuth: true, Metrics: reg}); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile("../../deploy/grafana/esignflow.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`\besignflow_[a-z0-9_]+`)
	checked := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && reg.seen[b] {
						base = b
					}
				}
				checked++
				if !reg.seen[base] {
					t.Errorf("panel %q queries %s, which no component registers", p.Title, name)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("the dashboard queries no esignflow metric")
	}
}

// noKeys is an ingress without webhook secrets.
type noKeys struct{}

func (noKeys) Keys(string) [][]byte { return nil }
