package stack

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// group runs components, each with its own context. The first to fail
// cancels the rest; stop cancels them one at a time in reverse start order,
// waiting for each before the next, so that what depends on a component is
// gone before it is.
type group struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	comps  []component
	first  error
}

type component struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

// newGroup returns a group and a context that ends when a component fails.
// Components do not see the parent's cancellation: stop ends them, one at a
// time, in reverse order, logging each.
func newGroup(parent context.Context, log *slog.Logger) (*group, context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &group{log: log, ctx: ctx, cancel: cancel}, ctx
}

// go_ starts fn under name.
func (g *group) go_(name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(g.ctx)
	c := component{name: name, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.comps = append(g.comps, c)
	g.mu.Unlock()
	go func() {
		defer close(c.done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			g.mu.Lock()
			if g.first == nil {
				g.first = fmt.Errorf("%s: %w", name, err)
			}
			g.mu.Unlock()
			g.cancel()
		}
	}()
}

// stop stops every component, last started first, and returns the first
// failure. A second call stops nothing again.
func (g *group) stop() error {
	g.mu.Lock()
	comps := g.comps
	g.comps = nil
	g.mu.Unlock()
	for i := len(comps) - 1; i >= 0; i-- {
		start := time.Now()
		comps[i].cancel()
		<-comps[i].done
		g.log.Info("stopped", "component", comps[i].name, "took", time.Since(start).Round(time.Millisecond))
	}
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}
