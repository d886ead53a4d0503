package envelope_test

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// The expected bytes and hash were computed outside Go, by a few lines of
// Python following the encoding documented on Canonical, so that this test
// pins the format rather than the implementation.
func TestCanonicalGoldenVector(t *testing.T) {
	st, rs := schemas.StatusCompleted, schemas.RecipientSigned
	rid, ip := "r1", "203.0.113.5"
	verified := time.Date(2026, 11, 27, 8, 59, 0, 0, time.UTC)
	e := schemas.AuditEntry{
		Seq: 7, EnvelopeID: "env-42", EventID: "evt-9", Source: schemas.SourceWebhook, Type: "recipient.signed",
		Outcome: schemas.OutcomeApplied, Status: &st, RecipientID: &rid, RecipientStatus: &rs,
		OccurredAt: time.Date(2026, 11, 27, 9, 0, 1, 250_000_000, time.UTC),
		RecordedAt: time.Date(2026, 11, 27, 9, 0, 2, 0, time.FixedZone("CET", 0)),
		SourceIP:   &ip, IDVerifiedAt: &verified,
		PrevHash: strings.Repeat("11", 32),
	}
	const wantCanon = "0101370106656e762d343201056576742d390107574542484f4f4b0110726563697069656e742e7369676e656401074150504c4945440109434f4d504c455445440102723101065349474e45440118323032362d31312d32375430393a30303a30312e3235305a0118323032362d31312d32375430393a30303a30322e3030305a010b3230332e302e3131332e35000118323032362d31312d32375430383a35393a30302e3030305a00"
	if got := hex.EncodeToString(envelope.Canonical(e)); got != wantCanon {
		t.Fatalf("canonical:\n got %s\nwant %s", got, wantCanon)
	}
	if got, want := envelope.Hash(e), "dc239bb9e40b5e18915827a7ea667d3be60d6802b9b30c8a90d791163be53abb"; got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}
}

// The fields added after the first format (replaces, kind) are written
// only when set, name then value; computed, like the vector above, by a
// few lines of Python following Canonical's documentation. The vector
// above, whose entry has neither, pins that old entries hash as before.
func TestCanonicalGoldenVectorWithAddedFields(t *testing.T) {
	rs, rid, old := schemas.RecipientSent, "r3", "r1"
	kind := schemas.EventKindCorrected
	e := schemas.AuditEntry{
		Seq: 8, EnvelopeID: "env-42", EventID: "evt-10", Source: schemas.SourceWebhook, Type: "recipient-reassign",
		Outcome: schemas.OutcomeApplied, RecipientID: &rid, RecipientStatus: &rs, Replaces: &old, Kind: &kind,
		OccurredAt: time.Date(2026, 11, 27, 9, 5, 0, 0, time.UTC),
		RecordedAt: time.Date(2026, 11, 27, 9, 5, 1, 0, time.UTC),
		PrevHash:   strings.Repeat("22", 32),
	}
	const wantCanon = "0101380106656e762d343201066576742d31300107574542484f4f4b0112726563697069656e742d726561737369676e01074150504c4945440001027233010453454e540118323032362d31312d32375430393a30353a30302e3030305a0118323032362d31312d32375430393a30353a30312e3030305a0000000001087265706c616365730102723101046b696e640109434f52524543544544"
	if got := hex.EncodeToString(envelope.Canonical(e)); got != wantCanon {
		t.Fatalf("canonical:\n got %s\nwant %s", got, wantCanon)
	}
	if got, want := envelope.Hash(e), "dbfb4bac52b0542eb0244cc65933e20a5b26c4ccfb2535b9ff01ea5d7af3c047"; got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}
}
