package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// simFlags registers the simulator's flags on fs (prefix "" for `sim`,
// "sim-" inside `dev`) and returns a function that builds the Config once
// fs is parsed.
func simFlags(fs *flag.FlagSet, prefix string) func() (sim.Config, error) {
	var c sim.Config
	var secretFile string
	fs.StringVar(&c.Addr, prefix+"addr", "127.0.0.1:8090", "simulator API listen `address`")
	if prefix == "" {
		fs.StringVar(&c.WebhookURL, "webhook-url", "", "`URL` that receives the simulator's signed webhooks (none when empty)")
		fs.StringVar(&secretFile, "webhook-secret-file", "", "`file` with the webhook signing secrets, one whsec_… per line (all sign)")
		fs.StringVar(&c.StateFile, "state-file", "", "`file` keeping the envelopes and idempotency keys across restarts, saved atomically within 200ms of each change (none when empty)")
	}
	fs.DurationVar(&c.Step, prefix+"step", 2*time.Second, "mean `time` a recipient takes per step (sent → delivered → viewed → signed)")
	fs.Float64Var(&c.DeclineRate, prefix+"decline-rate", 0.05, "`fraction` of envelopes declined by their last recipient")
	fs.Float64Var(&c.VoidRate, prefix+"void-rate", 0.02, "`fraction` of envelopes voided by the sender")
	fs.Float64Var(&c.ExpireRate, prefix+"expire-rate", 0.02, "`fraction` of envelopes that expire")
	fs.Float64Var(&c.Faults.Drop, prefix+"drop", 0, "`fraction` of webhooks dropped for good")
	fs.Float64Var(&c.Faults.Duplicate, prefix+"duplicate", 0, "`fraction` of webhooks delivered twice")
	fs.Float64Var(&c.Faults.Delay, prefix+"delay", 0, "`fraction` of webhooks delayed (reordered) by up to --"+prefix+"max-delay")
	fs.DurationVar(&c.Faults.MaxDelay, prefix+"max-delay", 5*time.Second, "longest injected webhook `delay`")
	fs.Float64Var(&c.Faults.APIError, prefix+"api-error", 0, "`fraction` of API calls answered 503 before acting")
	fs.Float64Var(&c.Faults.APITimeout, prefix+"api-timeout", 0, "`fraction` of API calls that act and then never answer")
	fs.Float64Var(&c.Faults.CorruptDownload, prefix+"corrupt-download", 0, "`fraction` of downloads with a flipped byte")
	fs.DurationVar(&c.Faults.PartitionFrom, prefix+"partition-from", 0, "start of the webhook partition window, after start-up (`duration`)")
	fs.DurationVar(&c.Faults.PartitionFor, prefix+"partition-for", 0, "length of the webhook partition window (0: none)")
	fs.Uint64Var(&c.Seed, prefix+"seed", 1, "`seed` of every random choice; the same seed gives the same faults")
	fs.Float64Var(&c.RateLimit, prefix+"rate-limit", 0, "API `calls/s` before 429 (0: unlimited)")
	return func() (sim.Config, error) {
		if secretFile != "" {
			keys, err := readSecrets(secretFile)
			if err != nil {
				return c, err
			}
			c.WebhookSecrets = keys
		}
		if c.WebhookURL != "" && len(c.WebhookSecrets) == 0 {
			return c, fmt.Errorf("--webhook-url needs --webhook-secret-file: %w", errUsage)
		}
		if err := c.Validate(); err != nil {
			return c, fmt.Errorf("%w: invalid simulator flag: %w", errUsage, err)
		}
		return c, nil
	}
}

// readSecrets reads one Standard Webhooks secret per line; blank lines and
// lines starting with # are skipped.
func readSecrets(path string) ([]stdwebhook.Secret, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	var keys []stdwebhook.Secret
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := stdwebhook.ParseSecret(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no secret", path)
	}
	return keys, nil
}

func runSim(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sim", e, "Run the eSignature provider simulator: envelopes, signed webhooks, polls, downloads and injected faults.")
	build := simFlags(fs, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := build()
	if err != nil {
		return err
	}
	cfg.Logger = e.log
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
