package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Manifest is the per-envelope JSON written beside the files.
type Manifest struct {
	EnvelopeID  string                 `json:"envelope_id"`
	RequestID   *string                `json:"request_id,omitempty"`
	Tenant      *string                `json:"tenant,omitempty"`
	Provider    string                 `json:"provider"`
	Status      schemas.Status         `json:"status"`
	Version     int64                  `json:"version"`
	Files       []schemas.ArchivedFile `json:"files"`
	AuditHead   string                 `json:"audit_head"`
	AuditSeq    int64                  `json:"audit_seq"`
	FinalizedAt time.Time              `json:"finalized_at"`
	// NotKept are the artefacts the envelope's status calls for that its
	// provider does not keep (Keeper): absent from Files on purpose, not
	// lost.
	NotKept []provider.Artifact `json:"not_kept,omitempty"`
}

// ManifestName is where an envelope's manifest for a version is archived.
func ManifestName(envelopeID string, version int64) string {
	return fmt.Sprintf("manifests/%s/%d.json", envelopeID, version)
}

// artefacts are what a terminal status has to download: everything for a
// completed envelope, the audit trail for one that ended otherwise, nothing
// for one the provider never created.
func artefacts(st schemas.Status) []provider.Artifact {
	switch st {
	case schemas.StatusCompleted:
		return []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit}
	case schemas.StatusFailed:
		return nil
	default:
		return []provider.Artifact{provider.ArtifactAudit}
	}
}

// archiveError is a failure of the archive itself (not of the provider):
// it aborts the batch, which is consumed again, since every envelope
// needs the archive.
type archiveError struct{ err error }

func (e *archiveError) Error() string { return e.err.Error() }
func (e *archiveError) Unwrap() error { return e.err }

var errNoDownloader = errors.New("sink: no downloader for the provider")

// Keeper is what a Downloader also implements when its provider does not
// keep every artefact of every finished envelope: a provider that deletes
// what its sender canceled answers every read of a voided envelope,
// its files included, with a refusal (410 Gone) that no retry changes.
// Keeps reports whether the provider keeps kind for an envelope that
// ended in status. The sink downloads only what is kept, and names the
// rest in the manifest (NotKept) instead of dead-lettering the envelope;
// a Downloader that is not a Keeper keeps everything.
type Keeper interface {
	Keeps(status schemas.Status, kind provider.Artifact) bool
}

// finalize archives one envelope and returns its EnvelopeFinalized record.
// An error is an *archiveError, or the provider's reason for not serving
// a file (classify says whether to retry).
func (s *Sink) finalize(ctx context.Context, ch schemas.EnvelopeStatusChanged) (*kgo.Record, error) {
	name := ManifestName(ch.EnvelopeID, ch.Version)
	var m Manifest
	raw, err := s.cfg.Archive.Get(ctx, name)
	if err == nil {
		// Archived before a crash kept it from being published.
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, &archiveError{fmt.Errorf("manifest %s: %w", name, err)}
		}
		s.m.recovered.Inc()
	} else {
		if m, err = s.archive(ctx, ch); err != nil {
			return nil, err
		}
		if raw, err = json.MarshalIndent(m, "", "  "); err != nil {
			return nil, &archiveError{err}
		}
	}
	// The first write of the manifest, or an idempotent rewrite of the same
	// bytes that yields its location.
	loc, err := s.cfg.Archive.Put(ctx, name, raw)
	if err != nil {
		return nil, &archiveError{err}
	}
	sum := sha256.Sum256(raw)
	m.Files = append(m.Files, schemas.ArchivedFile{Kind: "manifest", Location: loc, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(raw))})
	fin := schemas.EnvelopeFinalized{EnvelopeID: m.EnvelopeID, RequestID: m.RequestID, Tenant: m.Tenant, Status: string(m.Status),
		Version: m.Version, Files: m.Files, AuditHead: m.AuditHead, AuditSeq: m.AuditSeq, FinalizedAt: m.FinalizedAt}
	val, err := s.cfg.Codec.Encode(&fin)
	if err != nil {
		return nil, &archiveError{err}
	}
	return &kgo.Record{Topic: s.cfg.Codec.Topics().Finalized, Key: []byte(m.EnvelopeID), Value: val}, nil
}

// archive downloads, verifies and stores the artefacts of ch.
func (s *Sink) archive(ctx context.Context, ch schemas.EnvelopeStatusChanged) (Manifest, error) {
	m := Manifest{EnvelopeID: ch.EnvelopeID, RequestID: ch.State.RequestID, Tenant: ch.State.Tenant, Provider: ch.State.Provider,
		Status: ch.Status, Version: ch.Version, AuditHead: ch.State.AuditHead, AuditSeq: ch.State.AuditSeq,
		FinalizedAt: ch.ChangedAt.UTC(), Files: []schemas.ArchivedFile{}}
	kinds := artefacts(ch.Status)
	dl := s.cfg.Downloaders[ch.State.Provider]
	if len(kinds) > 0 && dl == nil {
		return m, fmt.Errorf("%w %q", errNoDownloader, ch.State.Provider)
	}
	for _, kind := range kinds {
		if k, ok := dl.(Keeper); ok && !k.Keeps(ch.Status, kind) {
			m.NotKept = append(m.NotKept, kind)
			continue
		}
		body, sum, err := s.download(ctx, dl, ch.EnvelopeID, kind)
		if err != nil {
			return m, err
		}
		// Content-addressed: the same bytes under the same name, so a
		// repeated put is harmless.
		loc, err := s.cfg.Archive.Put(ctx, "sha256/"+sum, body)
		if err != nil {
			return m, &archiveError{err}
		}
		m.Files = append(m.Files, schemas.ArchivedFile{Kind: string(kind), Location: loc, SHA256: sum, Size: int64(len(body))})
	}
	return m, nil
}

// download fetches one artefact and checks its hash: bytes that do not
// match are downloaded again, up to DigestAttempts times in a row, and
// never returned. A provider error ends the attempt at once.
func (s *Sink) download(ctx context.Context, dl Downloader, id string, kind provider.Artifact) ([]byte, string, error) {
	wait := min(s.cfg.RetryBase, time.Second)
	var last error
	for attempt := 1; attempt <= s.cfg.DigestAttempts; attempt++ {
		d, err := dl.Download(ctx, id, kind)
		if err != nil {
			s.m.downloadFailures.WithLabelValues("provider").Inc()
			return nil, "", fmt.Errorf("download %s of %s: %w", kind, id, err)
		}
		sum := sha256.Sum256(d.Body)
		got := hex.EncodeToString(sum[:])
		if d.DeclaredHash == "" || d.DeclaredHash == got {
			s.m.downloads.Inc()
			return d.Body, got, nil
		}
		last = fmt.Errorf("%w: %s of %s declared %s, got %s", ErrDigest, kind, id, d.DeclaredHash, got)
		s.m.downloadFailures.WithLabelValues("digest").Inc()
		s.log.Warn("download does not match its declared digest", "envelope_id", id, "kind", kind, "attempt", attempt, "err", last)
		if attempt == s.cfg.DigestAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("download %s of %s: %w (last: %w)", kind, id, ctx.Err(), last)
		case <-time.After(wait):
		}
	}
	return nil, "", fmt.Errorf("%w (%d downloads in a row)", last, s.cfg.DigestAttempts)
}
