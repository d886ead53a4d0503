package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

// GenesisHash is the prev_hash of an envelope's first audit entry: 32 zero
// bytes in hex.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Canonical returns the bytes an audit entry's hash covers. The encoding is
// fixed so that anyone can re-implement the check:
//
// The fields seq, envelope_id, event_id, source, type, outcome, status,
// recipient_id, recipient_status, occurred_at, recorded_at, source_ip,
// user_agent, id_verified_at, document_sha256 are written in that order.
// An absent (null) field is the single byte 0x00; a present one is 0x01,
// then the length of its text as an unsigned LEB128 varint, then the text
// in UTF-8. Integers are written in decimal, times in RFC 3339 UTC with
// exactly three fractional digits ("2006-01-02T15:04:05.000Z"), enums by
// symbol. prev_hash and hash are not part of it.
//
// Fields added later follow, each only when it is set, as its name then
// its value, both written as a present text: replaces, then kind. An entry
// without them has exactly the bytes it had before they existed, so every
// hash recorded earlier still verifies.
func Canonical(e schemas.AuditEntry) []byte { return appendCanonical(make([]byte, 0, 256), e) }

func appendCanonical(b []byte, e schemas.AuditEntry) []byte {
	put := func(s string) {
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	opt := func(s *string) {
		if s == nil {
			b = append(b, 0)
			return
		}
		put(*s)
	}
	// A formatted time is always 24 bytes.
	tm := func(t time.Time) {
		b = append(b, 1, 24)
		b = appendMillis(b, t)
	}
	optTime := func(t *time.Time) {
		if t == nil {
			b = append(b, 0)
			return
		}
		tm(*t)
	}
	var num [20]byte
	put(string(strconv.AppendInt(num[:0], e.Seq, 10)))
	put(e.EnvelopeID)
	put(e.EventID)
	put(string(e.Source))
	put(e.Type)
	put(string(e.Outcome))
	if e.Status == nil {
		b = append(b, 0)
	} else {
		put(string(*e.Status))
	}
	opt(e.RecipientID)
	if e.RecipientStatus == nil {
		b = append(b, 0)
	} else {
		put(string(*e.RecipientStatus))
	}
	tm(e.OccurredAt)
	tm(e.RecordedAt)
	opt(e.SourceIP)
	opt(e.UserAgent)
	optTime(e.IDVerifiedAt)
	opt(e.DocumentSHA256)
	if e.Replaces != nil {
		put("replaces")
		put(*e.Replaces)
	}
	if e.Kind != nil {
		put("kind")
		put(e.Kind.String())
	}
	return b
}

// appendMillis appends t as "2006-01-02T15:04:05.000Z" in UTC: what
// t.UTC().AppendFormat gives for years 0 to 9999, without parsing the
// layout each time (a third of the cost of hashing an entry).
func appendMillis(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	digits := func(v, n int) {
		for i := n - 1; i >= 0; i-- {
			b = append(b, 0)
		}
		for i := len(b) - 1; n > 0; i, n = i-1, n-1 {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	digits(year, 4)
	b = append(b, '-')
	digits(int(month), 2)
	b = append(b, '-')
	digits(day, 2)
	b = append(b, 'T')
	digits(hour, 2)
	b = append(b, ':')
	digits(minute, 2)
	b = append(b, ':')
	digits(sec, 2)
	b = append(b, '.')
	digits(t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// Hash returns hex(SHA-256(prev || Canonical(e))) where prev is the raw
// bytes of e.PrevHash. A malformed PrevHash hashes as given, so it can never
// verify against a well-formed chain.
func Hash(e schemas.AuditEntry) string {
	var buf [512]byte
	b := buf[:0]
	if prev, err := hex.AppendDecode(b, []byte(e.PrevHash)); err == nil {
		b = prev
	} else {
		b = append(b[:0], e.PrevHash...)
	}
	sum := sha256.Sum256(appendCanonical(b, e))
	var text [2 * sha256.Size]byte
	hex.Encode(text[:], sum[:])
	return string(text[:])
}

// ChainError names the first audit entry that does not verify.
type ChainError struct {
	Seq    int64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit entry %d: %s", e.Seq, e.Reason)
}

// Verify recomputes a chain given oldest first, from the genesis hash, and
// returns a *ChainError naming the first entry that is out of sequence, does
// not link to its predecessor or does not hash to what it says.
func Verify(entries []schemas.AuditEntry) error {
	prev := GenesisHash
	for i, e := range entries {
		switch {
		case e.Seq != int64(i)+1:
			return &ChainError{Seq: e.Seq, Reason: fmt.Sprintf("sequence %d where %d was expected", e.Seq, i+1)}
		case e.PrevHash != prev:
			return &ChainError{Seq: e.Seq, Reason: "prev_hash does not match the previous entry's hash"}
		case Hash(e) != e.Hash:
			return &ChainError{Seq: e.Seq, Reason: "hash does not match the entry's content"}
		}
		prev = e.Hash
	}
	return nil
}

// EventID derives a dedup id for an event whose provider gives none: the
// hex SHA-256 of provider, envelope, status, recipient and occurred-at,
// each length-prefixed so that no two tuples collide.
func EventID(provider, envelopeID, status, recipientID string, occurredAt time.Time) string {
	var b []byte
	for _, s := range []string{provider, envelopeID, status, recipientID, occurredAt.UTC().Format(time.RFC3339Nano)} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
