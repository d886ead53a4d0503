package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// simFlags registers the simulator's flags on fs (prefix "" for `sim`,
// "sim-" inside `dev`) and returns a function that builds the Config once
// fs is parsed.
func simFlags(fs *flag.FlagSet, prefix string) func() (sim.Config, error) {
	var c sim.Config
	var secretFile string
	var ds *docusignFlags
	fs.StringVar(&c.Addr, prefix+"addr", "127.0.0.1:8090", "simulator API listen `address`")
	if prefix == "" {
		ds = docusignSimFlags(fs)
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
		if ds != nil {
			d, err := ds.build(fs, secretFile != "", c.RateLimit > 0)
			if err != nil {
				return c, err
			}
			if d != nil {
				c.Dialect = d
				if c.WebhookURL != "" && len(ds.hmacKeys) == 0 {
					return c, fmt.Errorf("--webhook-url with --dialect docusign needs --docusign-hmac-key-file: %w", errUsage)
				}
				if err := c.Validate(); err != nil {
					return c, fmt.Errorf("%w: invalid simulator flag: %w", errUsage, err)
				}
				return c, nil
			}
		}
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

// docusignFlags are the flags of `sim --dialect docusign`.
type docusignFlags struct {
	dialect                    string
	publicKeyFile, hmacKeyFile string
	cfg                        docusignfake.Config
	hmacKeys                   [][]byte
}

func docusignSimFlags(fs *flag.FlagSet) *docusignFlags {
	f := &docusignFlags{}
	fs.StringVar(&f.dialect, "dialect", "standard", "`protocol` the simulator speaks: standard (its /v1 API and Standard Webhooks) or docusign (DocuSign eSignature REST v2.1, OAuth JWT grant and Connect JSON SIM webhooks)")
	fs.StringVar(&f.publicKeyFile, "docusign-public-key-file", "", "PEM `file` with the RSA public key (or the private key) that verifies the JWT assertions of /oauth/token (required with --dialect docusign)")
	fs.StringVar(&f.cfg.IntegrationKey, "docusign-integration-key", docusignfake.DefaultIntegrationKey, "integration `key` expected as the JWT's iss")
	fs.StringVar(&f.cfg.UserID, "docusign-user-id", docusignfake.DefaultUserID, "user `id` expected as the JWT's sub")
	fs.StringVar(&f.cfg.AccountID, "docusign-account-id", docusignfake.DefaultAccountID, "account `id` served under /restapi/v2.1/accounts/ and listed by /oauth/userinfo")
	fs.StringVar(&f.hmacKeyFile, "docusign-hmac-key-file", "", "`file` with the Connect HMAC keys, one per line, each used as its bytes; every key signs (X-DocuSign-Signature-1…N). Required with --webhook-url")
	fs.IntVar(&f.cfg.HourlyLimit, "docusign-hourly-limit", 3000, "REST `calls` per hour (resetting at the top of the hour) before HOURLY_APIINVOCATION_LIMIT_EXCEEDED")
	fs.IntVar(&f.cfg.BurstLimit, "docusign-burst-limit", 500, "REST `calls` per 30 s before BURST_APIINVOCATION_LIMIT_EXCEEDED")
	fs.DurationVar(&f.cfg.PollInterval, "docusign-poll-interval", 0, "shortest `time` between two status reads of one envelope before a per-envelope polling limit error (0: none)")
	fs.BoolVar(&f.cfg.NoConsent, "docusign-no-consent", false, "answer consent_required to every JWT grant, as DocuSign does before the user consents")
	return f
}

// build returns the DocuSign dialect when --dialect docusign, nil for
// standard; a flag of the other dialect is refused by name.
func (f *docusignFlags) build(fs *flag.FlagSet, standardSecrets, standardRateLimit bool) (*docusignfake.Dialect, error) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch f.dialect {
	case "standard":
		for name := range set {
			if strings.HasPrefix(name, "docusign-") {
				return nil, fmt.Errorf("--%s needs --dialect docusign: %w", name, errUsage)
			}
		}
		return nil, nil
	case "docusign":
	default:
		return nil, fmt.Errorf("--dialect %q: want standard or docusign: %w", f.dialect, errUsage)
	}
	if standardSecrets {
		return nil, fmt.Errorf("--webhook-secret-file is for --dialect standard; DocuSign signs with --docusign-hmac-key-file: %w", errUsage)
	}
	if standardRateLimit {
		return nil, fmt.Errorf("--rate-limit is for --dialect standard; DocuSign limits with --docusign-hourly-limit and --docusign-burst-limit: %w", errUsage)
	}
	if f.publicKeyFile == "" {
		return nil, fmt.Errorf("--dialect docusign needs --docusign-public-key-file: %w", errUsage)
	}
	pub, err := readRSAPublicKey(f.publicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--docusign-public-key-file: %w: %w", err, errUsage)
	}
	f.cfg.PublicKey = pub
	if f.hmacKeyFile != "" {
		if f.hmacKeys, err = readLines(f.hmacKeyFile); err != nil {
			return nil, fmt.Errorf("--docusign-hmac-key-file: %w: %w", err, errUsage)
		}
		f.cfg.HMACKeys = f.hmacKeys
	}
	for name, v := range map[string]string{"docusign-integration-key": f.cfg.IntegrationKey, "docusign-user-id": f.cfg.UserID, "docusign-account-id": f.cfg.AccountID} {
		if strings.TrimSpace(v) == "" || strings.ContainsAny(v, "/?#") {
			return nil, fmt.Errorf("--%s %q: want a non-empty id without / ? #: %w", name, v, errUsage)
		}
	}
	if f.cfg.HourlyLimit <= 0 || f.cfg.BurstLimit <= 0 {
		return nil, fmt.Errorf("--docusign-hourly-limit and --docusign-burst-limit must be > 0: %w", errUsage)
	}
	if f.cfg.PollInterval < 0 {
		return nil, fmt.Errorf("--docusign-poll-interval must not be negative: %w", errUsage)
	}
	d, err := docusignfake.New(f.cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return d, nil
}

// readRSAPublicKey reads a PEM public key (PKIX or PKCS #1), or takes the
// public half of a PEM private key (PKCS #1 or PKCS #8).
func readRSAPublicKey(path string) (*rsa.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "RSA PRIVATE KEY":
		var k *rsa.PrivateKey
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		if err == nil {
			key = &k.PublicKey
		}
	case "PRIVATE KEY":
		var k any
		if k, err = x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if rk, ok := k.(*rsa.PrivateKey); ok {
				key = &rk.PublicKey
			}
		}
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not an RSA key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New(path + ": not an RSA key")
	}
	return pub, nil
}

// readLines reads one secret per line; blank lines and lines starting
// with # are skipped.
func readLines(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keys = append(keys, []byte(line))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}

func runSim(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sim", e, "Run the eSignature provider simulator: envelopes, signed webhooks, polls, downloads and injected faults, in the standard dialect or DocuSign's (--dialect docusign).")
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
