package registry

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// docusignCredentialFlags enable DocuSign; the others have defaults or
// are optional.
var docusignCredentialFlags = []string{"docusign-account-id", "docusign-integration-key", "docusign-user-id", "docusign-private-key-file"}

// docusignProvider is DocuSign eSignature REST v2.1 (JWT grant) and
// Connect (JSON SIM, HMAC).
func docusignProvider() Provider {
	return Provider{
		Name: "docusign", Webhook: connectScheme{}, MinPollInterval: docusign.MinPollInterval, Dialect: "docusign",
		EnableFlags: docusignCredentialFlags,
		flags:       docusignFlags,
		simulate:    simulateDocuSign,
	}
}

// connectScheme is DocuSign Connect: X-DocuSign-Signature-N over the raw
// body with every HMAC key; no timestamp.
type connectScheme struct{}

func (connectScheme) Verify(keys [][]byte, h http.Header, body []byte, _ time.Time, _ time.Duration) error {
	err := docusign.Verify(keys, h, body)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, docusign.ErrNoSignature):
		return &provider.VerifyError{Reason: provider.VerifyMissing, Err: err}
	default:
		return &provider.VerifyError{Reason: provider.VerifyMismatch, Err: err}
	}
}

func (connectScheme) Parse(_ http.Header, body []byte) ([]schemas.EnvelopeEvent, error) {
	evs, err := docusign.Parse(body)
	if errors.Is(err, docusign.ErrIgnored) {
		return nil, fmt.Errorf("%w: %w", provider.ErrWebhookIgnored, err)
	}
	return evs, err
}

func (connectScheme) Reply() string { return "" }

// docusignAPI is the --docusign-* flags.
type docusignAPI struct {
	cfg docusign.Config
}

func docusignFlags(fs *flag.FlagSet) api {
	a := &docusignAPI{}
	fs.StringVar(&a.cfg.AccountID, "docusign-account-id", "", "DocuSign account `id` (GUID): REST calls go to …/restapi/v2.1/accounts/ID; with the integration key, user id and private key file it enables DocuSign")
	fs.StringVar(&a.cfg.IntegrationKey, "docusign-integration-key", "", "DocuSign integration `key` (the app's client id, the JWT's iss)")
	fs.StringVar(&a.cfg.UserID, "docusign-user-id", "", "`GUID` of the DocuSign user esignflow impersonates (the JWT's sub; the user must have consented)")
	fs.StringVar(&a.cfg.PrivateKeyFile, "docusign-private-key-file", "", "PEM `file` with the integration key's RSA private key; re-read when it changes, never logged")
	fs.StringVar(&a.cfg.AuthURL, "docusign-auth-url", docusign.DefaultAuthURL, "DocuSign OAuth `URL` (production: https://account.docusign.com)")
	fs.StringVar(&a.cfg.BaseURL, "docusign-base-url", "", "DocuSign REST `URL` (e.g. https://demo.docusign.net); default: the account's base_uri from /oauth/userinfo")
	fs.StringVar(&a.cfg.IDVerificationWorkflow, "docusign-id-verification-workflow", "", "identity-verification workflow `id` for recipients with auth ID_VERIFICATION (without it such requests fail)")
	return a
}

func (a *docusignAPI) enabled() bool {
	return a.cfg.AccountID != "" || a.cfg.IntegrationKey != "" || a.cfg.UserID != "" || a.cfg.PrivateKeyFile != ""
}

func (a *docusignAPI) open(ctx context.Context, o Options) (provider.Provider, error) {
	var missing []string
	for i, v := range []string{a.cfg.AccountID, a.cfg.IntegrationKey, a.cfg.UserID, a.cfg.PrivateKeyFile} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, "--"+docusignCredentialFlags[i])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("docusign: %s: DocuSign needs %s", list(missing), list(flagNames(docusignCredentialFlags)))
	}
	cfg := a.cfg
	cfg.Metrics, cfg.Logger = o.Metrics, o.logger()
	c, err := docusign.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("docusign: check the --docusign-* flags: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Check(cctx); err != nil {
		return nil, fmt.Errorf("docusign: the account does not answer with the --docusign-* flags given: %w", err)
	}
	return c, nil
}

// simulateDocuSign makes the simulator speak DocuSign: a key pair for the
// JWT grant generated once into Dir/docusign-private-key.pem (the dialect
// verifies with its public half), a Connect HMAC key generated once into
// SecretsDir/docusign, and the account's limits raised out of the way
// (DocuSign's 3000 calls an hour would stop a demo or a benchmark; the
// adapter's handling of the limits is tested against the dialect
// directly).
func simulateDocuSign(cfg SimulateConfig) (*Simulated, error) {
	keyFile := filepath.Join(cfg.Dir, "docusign-private-key.pem")
	key, err := ensureRSAKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("docusign key pair: %w", err)
	}
	hmacKey, err := ensureKey(filepath.Join(cfg.SecretsDir, "docusign"), base64.StdEncoding.EncodeToString)
	if err != nil {
		return nil, err
	}
	d, err := docusignfake.New(docusignfake.Config{PublicKey: &key.PublicKey, HMACKeys: [][]byte{[]byte(hmacKey)},
		HourlyLimit: 1 << 30, BurstLimit: 1 << 30})
	if err != nil {
		return nil, err
	}
	return &Simulated{
		Provider:  "docusign",
		Configure: func(c *sim.Config) { c.Dialect, c.WebhookSecrets = d, nil },
		Connect: func(url string, timeout time.Duration, o Options) (provider.Provider, error) {
			return docusign.New(docusign.Config{
				AccountID: d.AccountID(), IntegrationKey: docusignfake.DefaultIntegrationKey, UserID: docusignfake.DefaultUserID,
				PrivateKeyFile: keyFile, AuthURL: url, IDVerificationWorkflow: "esignflow-simulated-idv",
				CallTimeout: timeout, Metrics: o.Metrics, Logger: o.logger(),
			})
		},
	}, nil
}

// ensureRSAKey reads the PEM RSA private key at path, generating one
// (2048 bits, PKCS #1, mode 0600) when the file does not exist.
func ensureRSAKey(path string) (*rsa.PrivateKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		raw = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
		return key, nil
	} else if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "RSA PRIVATE KEY" {
		return nil, fmt.Errorf("%s holds no PEM RSA PRIVATE KEY", path)
	}
	return x509.ParsePKCS1PrivateKey(block.Bytes)
}
