// Package kafkalog adapts franz-go's logging to slog (through kslog) at
// warning level and above: the client logs every transaction and rebalance
// step at info, which drowns an operator's log.
package kafkalog

import (
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
)

type capped struct{ kgo.Logger }

func (c capped) Level() kgo.LogLevel { return min(c.Logger.Level(), kgo.LogLevelWarn) }

// New returns a kgo.Logger writing warnings and errors to log.
func New(log *slog.Logger) kgo.Logger { return capped{kslog.New(log)} }
