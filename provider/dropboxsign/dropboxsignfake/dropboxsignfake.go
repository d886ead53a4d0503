// Package dropboxsignfake is the simulator's Dropbox Sign dialect: the
// Dropbox Sign (HelloSign) API v3 and its callbacks as PROVIDER-APIS.md
// section 2 describes them, served over the simulator's engine
// (provider/sim) so that its lifecycle, faults, truth and persistence hold
// whatever the protocol.
//
// It serves, under /v3: POST signature_request/send (JSON with
// file_urls[], or multipart/form-data or a urlencoded form with files[N]
// and bracket-named fields such as signers[0][email_address] and
// metadata[key]; JSON-encoded signers and metadata fields are taken too,
// as the SDKs send them), GET signature_request/{id}, GET
// signature_request/list (page, page_size, query), POST
// signature_request/cancel/{id}, GET signature_request/files/{id}
// (file_type pdf or zip) and GET account. Calls authenticate with HTTP Basic,
// the API key as the user name; every answer carries X-RateLimit-Limit,
// X-RateLimit-Remaining and X-Ratelimit-Reset (the spec's casing, Unix
// seconds) for the call's tier, and past the tier's limit a call is refused
// 429 exceeded_rate. Errors are {"error":{"error_msg","error_name",
// "error_path"?}}; timestamps are Unix seconds; metadata values come back
// as strings.
//
// Callbacks are multipart/form-data posts with the event in the form field
// "json", User-Agent "HelloSign API" and Content-MD5, hashed with the API
// key (event_hash = hex(HMAC-SHA256(API key, event_time + event_type))).
// An answer without "Hello API Event Received" in its body is retried,
// with the same event_time and so the same event_hash.
//
// Where the real API is not documented (PROVIDER-APIS.md section 8) the
// dialect chooses, and says so where it does: Idempotency-Key replays
// (Config.SendDelay, send), what a canceled request answers (410 deleted),
// the search syntax and its lag (Config.SearchLag), when files are
// being prepared (Config.FilesDelay).
//
// Wire it with sim.Config{Dialect: d} where d comes from New.
package dropboxsignfake

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/sim/ratewindow"
)

// DefaultAccountID is the account the dialect answers as unless Config
// says otherwise (40 hex characters, as Dropbox Sign's).
const DefaultAccountID = "5a1f7c4e9b0d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"

// Dropbox Sign's documented per-minute limits at the account level
// (PROVIDER-APIS.md 2.6).
const (
	DefaultStandardLimit = 100
	DefaultHighTierLimit = 25
	DefaultTestModeLimit = 10
)

// Config configures the Dropbox Sign dialect. Only APIKey is required.
type Config struct {
	// APIKey is the account's API key: the HTTP Basic user name every
	// call must carry, and the key of every callback's event_hash.
	// Required.
	APIKey string
	// AccountID is the account's id (GET account, every callback's
	// reported_for_account_id), overriding DefaultAccountID.
	AccountID string
	// EmailAddress is the account's, the requester_email_address of every
	// signature request, overriding "sender@example.com".
	EmailAddress string
	// CallbackURL is what GET account reports as the account callback
	// URL; callbacks go to the simulator's WebhookURL whatever it says.
	CallbackURL string
	// StandardLimit, HighTierLimit and TestModeLimit are the calls per
	// RateWindow of each tier, overriding Dropbox Sign's 100, 25 and 10
	// per minute. High tier: send and files; test mode: a send with
	// test_mode; standard: every other call. Each tier counts on its own.
	StandardLimit, HighTierLimit, TestModeLimit int
	// RateWindow is the limits' window, overriding the default minute;
	// windows start at multiples of it since the Unix epoch
	// (X-Ratelimit-Reset is the end of the current one). Tests shorten
	// it.
	RateWindow time.Duration
	// SendDelay is how long a send takes before it acts, overriding the
	// default 0: meanwhile a send with the same Idempotency-Key is
	// answered 409 conflict.
	SendDelay time.Duration
	// IdempotencyWindow is how long an Idempotency-Key replays its
	// signature request, overriding Dropbox Sign's 24h.
	IdempotencyWindow time.Duration
	// SearchLag is how long a new signature request stays out of
	// signature_request/list, its search index (Dropbox Sign: "a minor
	// delay after creation"), overriding the default 0 (listed at once).
	SearchLag time.Duration
	// FilesDelay is how long after its last signature a signature
	// request's files are being prepared: signature_request/files answers
	// 409 conflict meanwhile, and signature_request_downloadable is sent
	// when it ends. Default 0: ready at once.
	FilesDelay time.Duration
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.APIKey == "":
		return errors.New("dropboxsignfake: an API key is required")
	case c.StandardLimit < 0 || c.HighTierLimit < 0 || c.TestModeLimit < 0:
		return errors.New("dropboxsignfake: limits must not be negative")
	case c.RateWindow < 0 || c.SendDelay < 0 || c.IdempotencyWindow < 0 || c.SearchLag < 0 || c.FilesDelay < 0:
		return errors.New("dropboxsignfake: durations must not be negative")
	}
	return nil
}

func (c *Config) defaults() {
	if c.AccountID == "" {
		c.AccountID = DefaultAccountID
	}
	if c.EmailAddress == "" {
		c.EmailAddress = "sender@example.com"
	}
	if c.StandardLimit == 0 {
		c.StandardLimit = DefaultStandardLimit
	}
	if c.HighTierLimit == 0 {
		c.HighTierLimit = DefaultHighTierLimit
	}
	if c.TestModeLimit == 0 {
		c.TestModeLimit = DefaultTestModeLimit
	}
	if c.RateWindow == 0 {
		c.RateWindow = time.Minute
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 24 * time.Hour
	}
}

// Dialect is the Dropbox Sign dialect, a sim.Dialect and a sim.Acceptor.
// Use one per Simulator. Its methods are safe for concurrent use.
type Dialect struct {
	cfg Config
	sim *sim.Simulator // set by Handler

	mu      sync.Mutex
	windows [tiers]ratewindow.Window

	// idem guards inFlight apart from mu: it is held across engine calls
	// (the engine never calls the dialect back under it).
	idem     sync.Mutex
	inFlight map[string]bool // Idempotency-Key → a send with it is acting

	index searchIndex

	sigSeq atomic.Uint64 // signature ids

	stats struct {
		unauthorized, rateLimited, replays, conflicts, notReady, sending atomic.Int64
	}
}

var (
	_ sim.Dialect  = (*Dialect)(nil)
	_ sim.Acceptor = (*Dialect)(nil)
)

// New returns the dialect for cfg; pass it as sim.Config.Dialect.
func New(cfg Config) (*Dialect, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	return &Dialect{cfg: cfg, inFlight: map[string]bool{}}, nil
}

// AccountID is the account the dialect serves.
func (d *Dialect) AccountID() string { return d.cfg.AccountID }

// Stats counts what the dialect refused or replayed.
type Stats struct {
	Unauthorized  int64 // calls refused 401 (no or another API key)
	RateLimited   int64 // calls refused 429 exceeded_rate
	Replays       int64 // sends answered with the signature request of their Idempotency-Key
	InFlight      int64 // sends refused 409 while one with the same key was acting
	FilesNotReady int64 // files calls answered 409 while the files were being prepared
	Sending       int64 // sends with an Idempotency-Key acting now (see Config.SendDelay)
}

// Stats returns the counters so far.
func (d *Dialect) Stats() Stats {
	s := &d.stats
	return Stats{Unauthorized: s.unauthorized.Load(), RateLimited: s.rateLimited.Load(), Replays: s.replays.Load(),
		InFlight: s.conflicts.Load(), FilesNotReady: s.notReady.Load(), Sending: s.sending.Load()}
}

// EnvelopeID names signature requests as Dropbox Sign does: 40 hex
// characters, drawn from the sequence and the Idempotency-Key.
func (d *Dialect) EnvelopeID(seq uint64, key string) string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))[:40]
}

// signatureID makes a new signature id: 32 hex characters.
func (d *Dialect) signatureID(key string, i int, email string) string {
	h := sha256.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], d.sigSeq.Add(1))
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	h.Write(b[:])
	h.Write([]byte(key))
	binary.BigEndian.PutUint64(b[:8], uint64(i))
	h.Write(b[:8])
	h.Write([]byte(email))
	return hex.EncodeToString(h.Sum(nil))[:32]
}
