// Package docusignfake is the simulator's DocuSign dialect: DocuSign
// eSignature REST v2.1 and Connect as PROVIDER-APIS.md section 1 describes
// them, served over the simulator's engine (provider/sim) so that its
// lifecycle, faults, truth and persistence hold whatever the protocol.
//
// It serves, under /restapi/v2.1/accounts/{accountId}: create
// (POST envelopes, status created or sent), send or void (PUT
// envelopes/{id}), status (GET envelopes/{id}, include=recipients,
// custom_fields), listStatusChanges (GET envelopes with from_date,
// envelope_ids or transaction_ids, paged with start_position and count),
// recipients, documents (combined, certificate, or a documentId) and
// audit_events; and the OAuth endpoints POST /oauth/token (the JWT-bearer
// grant, the assertion verified with Config.PublicKey) and GET
// /oauth/userinfo. REST calls need a bearer token from /oauth/token. Every
// REST answer carries X-RateLimit-Limit, -Remaining, -Reset and
// X-BurstLimit-Limit, -Remaining; past a limit calls are refused with
// HOURLY_APIINVOCATION_LIMIT_EXCEEDED or BURST_APIINVOCATION_LIMIT_EXCEEDED
// until the window resets, and with Config.PollInterval an envelope's status
// read more often than that is refused with a per-envelope polling error.
// Webhooks are Connect JSON SIM messages signed X-DocuSign-Signature-1…N
// with every Config.HMACKeys key.
//
// Wire it with sim.Config{Dialect: d} where d comes from New.
package docusignfake

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/sim/ratewindow"
)

// Identities the simulator answers to unless Config says otherwise.
const (
	DefaultAccountID      = "9a1f7c4e-0000-4000-8000-000000000001"
	DefaultUserID         = "6b1c2d3e-0000-4000-8000-000000000002"
	DefaultIntegrationKey = "3c7d9e1f-0000-4000-8000-000000000003"
)

// Config configures the DocuSign dialect. Only PublicKey is required.
type Config struct {
	// PublicKey verifies the RS256 JWT assertions of POST /oauth/token:
	// the public half of the integration key's RSA key pair. Required.
	PublicKey *rsa.PublicKey
	// IntegrationKey is the JWT's expected iss, overriding
	// DefaultIntegrationKey.
	IntegrationKey string
	// UserID is the JWT's expected sub (the impersonated user),
	// overriding DefaultUserID.
	UserID string
	// AccountID is the account in every REST path and in userinfo,
	// overriding DefaultAccountID.
	AccountID string
	// AccountName, UserName and UserEmail fill userinfo, overriding
	// "esignflow simulator", "Sim Sender" and "sender@example.com".
	AccountName, UserName, UserEmail string
	// NoConsent makes the token endpoint answer consent_required, as
	// DocuSign does until the user has consented; change it later with
	// SetConsent.
	NoConsent bool
	// TokenTTL is the access token's lifetime (expires_in), overriding
	// the default 1h.
	TokenTTL time.Duration
	// HMACKeys sign every Connect message, one X-DocuSign-Signature-N
	// header per key (N from 1, in order): base64(HMAC-SHA256(key, body)),
	// the key used as its bytes. None: messages go unsigned (HMAC off).
	HMACKeys [][]byte
	// ConfigurationID is the Connect configuration's id in every message,
	// overriding the default 10452187.
	ConfigurationID int64
	// HourlyLimit is the account's REST calls per hourly window
	// (X-RateLimit-Limit), overriding DocuSign's default 3000.
	HourlyLimit int
	// HourlyWindow is that window, overriding the default 1h; windows
	// start at multiples of it since the Unix epoch, so the default resets
	// at the top of each hour (X-RateLimit-Reset, epoch seconds). Tests
	// shorten it.
	HourlyWindow time.Duration
	// BurstLimit is the REST calls per burst window (X-BurstLimit-Limit),
	// overriding DocuSign's production 500.
	BurstLimit int
	// BurstWindow is the burst window, overriding the default 30s.
	BurstWindow time.Duration
	// LimitStatus is the HTTP status of the account limit errors,
	// overriding the default 400 (what integrations report; DocuSign may
	// move to 429 — clients key on errorCode).
	LimitStatus int
	// PollInterval, when > 0, is the shortest time between two reads of
	// one envelope's status (GET envelopes/{id} and its recipients): a
	// read sooner is refused with 400 Burst_Envelope_Polling_Limit_Exceeded
	// (Hourly_Envelope_Polling_Limit_Exceeded when the interval is over
	// 30s). Default 0: no per-envelope limit.
	PollInterval time.Duration
	// PageSize is listStatusChanges' count when the call gives none,
	// overriding the default 100; a count above MaxPageSize (default
	// 1000) is cut to it.
	PageSize, MaxPageSize int
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.PublicKey == nil:
		return errors.New("docusignfake: a public key is required to verify JWT assertions")
	case c.TokenTTL < 0 || c.HourlyWindow < 0 || c.BurstWindow < 0 || c.PollInterval < 0:
		return errors.New("docusignfake: durations must not be negative")
	case c.HourlyLimit < 0 || c.BurstLimit < 0 || c.PageSize < 0 || c.MaxPageSize < 0:
		return errors.New("docusignfake: limits and page sizes must not be negative")
	case c.LimitStatus != 0 && (c.LimitStatus < 400 || c.LimitStatus > 499):
		return fmt.Errorf("docusignfake: limit status %d is not a 4xx", c.LimitStatus)
	}
	for i, k := range c.HMACKeys {
		if len(k) == 0 {
			return fmt.Errorf("docusignfake: HMAC key %d is empty", i+1)
		}
	}
	return nil
}

func (c *Config) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.IntegrationKey, DefaultIntegrationKey)
	def(&c.UserID, DefaultUserID)
	def(&c.AccountID, DefaultAccountID)
	def(&c.AccountName, "esignflow simulator")
	def(&c.UserName, "Sim Sender")
	def(&c.UserEmail, "sender@example.com")
	if c.TokenTTL == 0 {
		c.TokenTTL = time.Hour
	}
	if c.ConfigurationID == 0 {
		c.ConfigurationID = 10452187
	}
	if c.HourlyLimit == 0 {
		c.HourlyLimit = 3000
	}
	if c.HourlyWindow == 0 {
		c.HourlyWindow = time.Hour
	}
	if c.BurstLimit == 0 {
		c.BurstLimit = 500
	}
	if c.BurstWindow == 0 {
		c.BurstWindow = 30 * time.Second
	}
	if c.LimitStatus == 0 {
		c.LimitStatus = 400
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	}
	if c.MaxPageSize == 0 {
		c.MaxPageSize = 1000
	}
}

// Dialect is the DocuSign dialect, a sim.Dialect. Use one per Simulator.
// Its methods are safe for concurrent use.
type Dialect struct {
	cfg Config
	sim *sim.Simulator // set by Handler

	mu      sync.Mutex
	consent bool
	tokens  map[string]time.Time // access token → expiry
	hourly  ratewindow.Window
	burst   ratewindow.Window
	polls   map[string]time.Time // envelope id → last status read

	stats struct {
		tokens, refused, userinfo, unauthorized, rateLimited, pollLimited atomic.Int64
	}
}

var _ sim.Dialect = (*Dialect)(nil)

// New returns the dialect for cfg; pass it as sim.Config.Dialect.
func New(cfg Config) (*Dialect, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	return &Dialect{cfg: cfg, consent: !cfg.NoConsent, tokens: map[string]time.Time{}, polls: map[string]time.Time{}}, nil
}

// AccountID is the account the dialect serves.
func (d *Dialect) AccountID() string { return d.cfg.AccountID }

// SetConsent says whether the user has consented to the integration key:
// without it POST /oauth/token answers consent_required.
func (d *Dialect) SetConsent(ok bool) {
	d.mu.Lock()
	d.consent = ok
	d.mu.Unlock()
}

// Stats counts what the dialect refused or issued.
type Stats struct {
	TokensIssued   int64 // access tokens issued by /oauth/token
	TokensRefused  int64 // assertions refused (consent_required included)
	UserInfoCalls  int64 // GET /oauth/userinfo answered 200
	Unauthorized   int64 // REST calls refused 401 (no, unknown or expired token)
	RateLimited    int64 // REST calls refused by the hourly or burst limit
	PollingLimited int64 // status reads refused by PollInterval
}

// Stats returns the counters so far.
func (d *Dialect) Stats() Stats {
	s := &d.stats
	return Stats{TokensIssued: s.tokens.Load(), TokensRefused: s.refused.Load(), UserInfoCalls: s.userinfo.Load(),
		Unauthorized: s.unauthorized.Load(), RateLimited: s.rateLimited.Load(), PollingLimited: s.pollLimited.Load()}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
