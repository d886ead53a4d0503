// Package reload re-reads files that configure a running process — webhook
// secrets, API tokens — without a restart: on SIGHUP, and whenever a cheap
// check says they changed.
package reload

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Source is something reloadable.
type Source interface {
	// Changed reports whether the files differ from those last loaded.
	Changed() bool
	// Reload loads them; on error what is in use stays in use.
	Reload() error
}

// Run reloads src on SIGHUP and whenever Changed says so (checked every
// interval, default 2s), until ctx ends. A failed reload is logged and the
// previous contents stay in use; a successful one is logged with the
// attributes loaded returns (counts, never the secrets).
func Run(ctx context.Context, interval time.Duration, src Source, what string, log *slog.Logger, loaded func() []any) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		case <-t.C:
			if !src.Changed() {
				continue
			}
		}
		if err := src.Reload(); err != nil {
			log.Error(what+" reload failed; keeping the previous ones", "err", err)
			continue
		}
		log.Info(what+" reloaded", loaded()...)
	}
}
