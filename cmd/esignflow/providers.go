package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/reload"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/registry"
)

// registerProviders registers every provider's API flags (the registry's:
// --sim-url, --docusign-*), for the services that call providers.
func registerProviders(fs *flag.FlagSet) *registry.Flags { return registry.RegisterFlags(fs, true) }

// openProviders builds the clients of the providers the flags enable,
// checking each where the provider allows (a refusal stops the service
// with the provider's flags named), and reloads their credentials on
// SIGHUP until ctx ends. No provider enabled is a usage error.
func openProviders(ctx context.Context, e *env, f *registry.Flags, reg prometheus.Registerer) (map[string]provider.Provider, error) {
	clients, err := f.Open(ctx, registry.Options{Metrics: reg, Logger: e.log})
	if err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		var hints []string
		for _, p := range registry.All() {
			if p.HasAPI() {
				hints = append(hints, p.Name+": --"+strings.Join(p.EnableFlags, " --"))
			}
		}
		return nil, fmt.Errorf("%w: no provider enabled (%s)", errUsage, strings.Join(hints, "; "))
	}
	names := make([]string, 0, len(clients))
	for name, c := range clients {
		names = append(names, name)
		if src, ok := c.(reload.Source); ok {
			go func() {
				// Exits when ctx ends; a failed reload keeps the
				// credentials in use.
				_ = reload.Run(ctx, 0, src, name+" credentials", e.log, func() []any { return nil })
			}()
		}
	}
	sort.Strings(names)
	e.log.Info("providers enabled", "providers", names)
	return clients, nil
}

// pollIntervals are the providers' own polling rules for the enabled
// ones, unless the operator set --min-poll-interval for all.
func pollIntervals(fs *flag.FlagSet, clients map[string]provider.Provider) map[string]time.Duration {
	out := map[string]time.Duration{}
	set := false
	fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "min-poll-interval" })
	if set {
		return out
	}
	for name := range clients {
		if p, ok := registry.Lookup(name); ok && p.MinPollInterval > 0 {
			out[name] = p.MinPollInterval
		}
	}
	return out
}
