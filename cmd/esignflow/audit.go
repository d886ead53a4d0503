package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// errAudit is a chain that does not verify: exit 1 with the entry named.
var errAudit = errors.New("audit trail does not verify")

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		return fmt.Errorf("%w: use 'audit verify <envelope-id>' or 'audit export <envelope-id>'", errUsage)
	}
	sub := args[0]
	fs := newFlagSet("audit "+sub+" <envelope-id>", e, "Rebuild an envelope's audit chain from esignflow.status.v1 and recompute every hash"+
		map[string]string{"verify": ", printing each entry and OK,\nor naming the first entry that does not match (exit 1).", "export": ", and write it as JSON."}[sub])
	c := connFlags(fs, false)
	archive := fs.String("archive-dir", "", "also check the chain head against the archived manifest in this `directory`")
	rest := args[1:]
	var id string
	if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		id, rest = rest[0], rest[1:]
	}
	if err := parseQuiet(fs, rest); err != nil {
		return err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	if id == "" {
		return fmt.Errorf("%w: name the envelope: audit %s <envelope-id>", errUsage, sub)
	}
	codec, err := c.lookupCodec(ctx)
	if err != nil {
		return err
	}
	base, err := c.clientOpts()
	if err != nil {
		return err
	}
	chain, last, err := loadChain(ctx, base, codec, id)
	if err != nil {
		return err
	}
	if len(chain) == 0 {
		return fmt.Errorf("no status change of envelope %s on %s", id, codec.Topics().Status)
	}
	if sub == "export" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			EnvelopeID string                `json:"envelope_id"`
			State      schemas.EnvelopeState `json:"state"`
			Entries    []schemas.AuditEntry  `json:"entries"`
		}{id, last.State, chain})
	}
	return verifyChain(ctx, e, chain, last, *archive)
}

// loadChain collects an envelope's audit entries from the status topic,
// oldest first, and its last status change.
func loadChain(ctx context.Context, opts []kgo.Opt, codec *schemas.Codec, id string) ([]schemas.AuditEntry, schemas.EnvelopeStatusChanged, error) {
	var chain []schemas.AuditEntry
	var last schemas.EnvelopeStatusChanged
	err := topicread.All(ctx, opts, codec.Topics().Status, func(r *kgo.Record) error {
		if string(r.Key) != id {
			return nil
		}
		var ch schemas.EnvelopeStatusChanged
		if err := codec.Decode(ctx, r.Value, &ch); err != nil {
			return fmt.Errorf("%s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		chain = append(chain, ch.Audit...)
		if ch.Version > last.Version {
			last = ch
		}
		return nil
	})
	sort.SliceStable(chain, func(i, j int) bool { return chain[i].Seq < chain[j].Seq })
	return chain, last, err
}

func verifyChain(ctx context.Context, e *env, chain []schemas.AuditEntry, last schemas.EnvelopeStatusChanged, archiveDir string) error {
	opt := func(s *string) string {
		if s == nil {
			return "-"
		}
		return *s
	}
	optTime := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, a := range chain {
		st, rs := "-", "-"
		if a.Status != nil {
			st = string(*a.Status)
		}
		if a.RecipientStatus != nil {
			rs = string(*a.RecipientStatus)
		}
		doc := opt(a.DocumentSHA256)
		if len(doc) > 12 {
			doc = doc[:12]
		}
		fmt.Fprintf(e.stdout, "#%-3d %s %-7s %-8s status=%-16s recipient=%s:%s ip=%s id-verified=%s doc=%s hash=%s\n",
			a.Seq, a.OccurredAt.UTC().Format(time.RFC3339), a.Source, a.Outcome, st, opt(a.RecipientID), rs,
			opt(a.SourceIP), optTime(a.IDVerifiedAt), doc, a.Hash[:16])
	}
	if err := envelope.Verify(chain); err != nil {
		return fmt.Errorf("%w: %w", errAudit, err)
	}
	head := chain[len(chain)-1].Hash
	if head != last.State.AuditHead {
		return fmt.Errorf("%w: the chain ends at %s, the envelope's state says %s", errAudit, head[:16], last.State.AuditHead)
	}
	if archiveDir != "" {
		raw, err := sink.Dir{Root: archiveDir}.Get(ctx, sink.ManifestName(last.EnvelopeID, last.Version))
		if err == nil {
			var m sink.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("manifest: %w", err)
			}
			if m.AuditHead != head {
				return fmt.Errorf("%w: the archived manifest's chain head %s is not the chain's %s", errAudit, m.AuditHead, head)
			}
			fmt.Fprintf(e.stdout, "archived manifest agrees (version %d)\n", m.Version)
		}
	}
	fmt.Fprintf(e.stdout, "OK: %d entries, chain head %s\n", len(chain), head)
	return nil
}
