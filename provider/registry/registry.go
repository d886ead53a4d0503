// Package registry is the one list of esignflow's providers. Each
// provider is one package under provider/ (the simulator, DocuSign,
// Dropbox Sign, and Standard Webhooks senders); this package registers
// what each offers — its webhook scheme, its API client and the flags that
// enable it, its polling rule, the simulator dialect that plays it — and
// the ingress, the processor, the reconciler, the sink, the CLI and the
// assembled stack iterate over it. Nothing outside provider/ names a
// provider.
//
// Adding a provider is one package under provider/ and one entry in
// providers below.
package registry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
)

// Provider is one provider's registration. The zero value of any field
// means the provider does not offer it.
type Provider struct {
	// Name is the provider's name in signing requests, events, the state
	// of its envelopes, POST /webhooks/{name} and its webhook secrets file.
	Name string
	// Webhook verifies and normalises its webhooks; nil: it sends none
	// esignflow takes.
	Webhook provider.Webhook
	// ParseSecret decodes one line of its webhook secrets file into key
	// bytes; nil uses the line's bytes.
	ParseSecret func(line string) ([]byte, error)
	// MinPollInterval is the provider's own polling rule: the least time
	// between two status reads of one envelope. 0: none beyond the
	// reconciler's default.
	MinPollInterval time.Duration
	// Dialect is the name of the simulator dialect that plays this
	// provider (esignflow sim, dev and bench --dialect); "" when the
	// simulator does not speak it.
	Dialect string
	// EnableFlags are the flags that enable its API client on a service
	// (in the order a message lists them); empty when esignflow has no
	// API client for it (webhooks only).
	EnableFlags []string
	// Local means the provider is esignflow's own simulator: esignflow
	// dev and bench run it in process, so its API flags are only for the
	// services run on their own.
	Local bool

	// flags registers the API client's flags; nil without an API.
	flags func(fs *flag.FlagSet) api
	// simulate prepares the simulator to play the provider; nil when it
	// cannot.
	simulate func(cfg SimulateConfig) (*Simulated, error)
}

// HasAPI reports whether esignflow has an API client for the provider:
// it can create envelopes there, poll them and download their artefacts.
func (p Provider) HasAPI() bool { return p.flags != nil }

// providers is the registry, in the order messages list them. The first
// is the default provider of a request that names none.
func providers() []Provider {
	return []Provider{simProvider(), docusignProvider(), dropboxsignProvider(), standardProvider()}
}

// All returns every provider, the default first.
func All() []Provider { return providers() }

// Default is the provider of a signing request that names none.
func Default() string { return providers()[0].Name }

// Names returns every provider's name, the default first.
func Names() []string {
	var out []string
	for _, p := range providers() {
		out = append(out, p.Name)
	}
	return out
}

// Lookup returns the provider called name.
func Lookup(name string) (Provider, bool) {
	for _, p := range providers() {
		if p.Name == name {
			return p, true
		}
	}
	return Provider{}, false
}

// Dialects returns the names of the simulator's dialects, the standard
// one first.
func Dialects() []string {
	var out []string
	for _, p := range providers() {
		if p.Dialect != "" && p.simulate != nil {
			out = append(out, p.Dialect)
		}
	}
	return out
}

// ByDialect returns the provider the simulator dialect d plays.
func ByDialect(d string) (Provider, bool) {
	for _, p := range providers() {
		if p.Dialect == d && p.simulate != nil {
			return p, true
		}
	}
	return Provider{}, false
}

// Webhooks returns every provider's webhook scheme, by name.
func Webhooks() map[string]provider.Webhook {
	out := map[string]provider.Webhook{}
	for _, p := range providers() {
		if p.Webhook != nil {
			out[p.Name] = p.Webhook
		}
	}
	return out
}

// DecodeSecret decodes one line of a provider's webhook secrets file: a
// secrets.Decoder. A file named after no provider is taken as its bytes.
func DecodeSecret(name, line string) ([]byte, error) {
	if p, ok := Lookup(name); ok && p.ParseSecret != nil {
		return p.ParseSecret(line)
	}
	return []byte(line), nil
}

// ErrNotEnabled is the sentinel of every NotEnabled error.
var ErrNotEnabled = errors.New("provider not enabled")

// NotEnabled explains why a service cannot create envelopes with the
// provider called name: it is unknown, it has no API client in esignflow,
// or its API was not enabled — then the message names the flags that
// enable it. It wraps ErrNotEnabled.
func NotEnabled(name string) error {
	p, ok := Lookup(name)
	switch {
	case !ok:
		return fmt.Errorf("%w: unknown provider %q (esignflow knows %s)", ErrNotEnabled, name, strings.Join(Names(), ", "))
	case !p.HasAPI():
		return fmt.Errorf("%w: provider %q has webhooks only in esignflow, no API to create envelopes with", ErrNotEnabled, name)
	default:
		return fmt.Errorf("%w: provider %q is not enabled: set %s", ErrNotEnabled, name, list(flagNames(p.EnableFlags)))
	}
}

func flagNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "--" + n
	}
	return out
}

// list is "a", "a and b", "a, b and c".
func list(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// Options are what every API client takes from the service that runs it.
type Options struct {
	// Metrics registers the clients' call metrics; nil keeps none.
	Metrics prometheus.Registerer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// api is one provider's API flags, once registered.
type api interface {
	// enabled reports whether the flags given enable the client.
	enabled() bool
	// open builds the client and checks it where the provider allows.
	open(ctx context.Context, o Options) (provider.Provider, error)
}

// Flags are the API flags of every provider, registered on one flag set.
type Flags struct {
	names []string
	apis  []api
}

// RegisterFlags registers on fs the API flags of every provider that has
// an API client (local ones only when standalone: esignflow dev runs the
// simulator itself). Read them with Open after fs is parsed.
func RegisterFlags(fs *flag.FlagSet, standalone bool) *Flags {
	f := &Flags{}
	for _, p := range providers() {
		if p.flags == nil || (p.Local && !standalone) {
			continue
		}
		f.names = append(f.names, p.Name)
		f.apis = append(f.apis, p.flags(fs))
	}
	return f
}

// Enabled returns the names of the providers the parsed flags enable.
func (f *Flags) Enabled() []string {
	var out []string
	for i, a := range f.apis {
		if a.enabled() {
			out = append(out, f.names[i])
		}
	}
	return out
}

// Open builds the client of every provider the flags enable, by name,
// checking each where the provider lets a configuration be checked
// (DocuSign: a token and the account's REST base): a provider that
// refuses fails here, with its flags named. A provider's credentials are
// read from files and re-read when they change; they are never logged.
func (f *Flags) Open(ctx context.Context, o Options) (map[string]provider.Provider, error) {
	out := map[string]provider.Provider{}
	for i, a := range f.apis {
		if !a.enabled() {
			continue
		}
		c, err := a.open(ctx, o)
		if err != nil {
			return nil, err
		}
		out[f.names[i]] = c
	}
	return out, nil
}

// SimulateConfig is what a provider's simulated setup is given.
type SimulateConfig struct {
	// Dir keeps what the setup generates once (keys), so that a restarted
	// stack reuses it.
	Dir string
	// SecretsDir is the webhook secrets directory the ingress reads: the
	// setup writes the provider's file there.
	SecretsDir string
}

// Simulated is a provider played by the simulator in process: how the
// simulator must be configured to speak the provider's dialect and sign
// its webhooks, and a client of it.
type Simulated struct {
	// Provider is the provider's name (the ingress's /webhooks/{name}).
	Provider string
	// Configure sets the simulator's dialect and webhook signing.
	Configure func(cfg *sim.Config)
	// Connect returns a client of the simulator at url, with calls bounded
	// by timeout.
	Connect func(url string, timeout time.Duration, o Options) (provider.Provider, error)
}

// Simulate prepares the simulator to play the provider called name.
func Simulate(name string, cfg SimulateConfig) (*Simulated, error) {
	p, ok := Lookup(name)
	if !ok || p.simulate == nil {
		var can []string
		for _, q := range providers() {
			if q.simulate != nil {
				can = append(can, q.Name)
			}
		}
		return nil, fmt.Errorf("registry: the simulator cannot play provider %q (it plays %s)", name, strings.Join(can, ", "))
	}
	return p.simulate(cfg)
}

// CanSimulate reports whether the simulator can play the provider.
func CanSimulate(name string) bool {
	p, ok := Lookup(name)
	return ok && p.simulate != nil
}
