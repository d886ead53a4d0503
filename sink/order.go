package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The order of an envelope's finalisations. A poll may settle an envelope
// on another terminal status (COMPLETED v4, then DECLINED v6) while an
// earlier version waits on the retry topic; finalising the earlier one
// after the later would leave esignflow.finalized.v1, read as a table
// (last record per envelope), and the archive saying the superseded
// outcome. Two markers per envelope keep the order, and every
// finalisation of one envelope runs in one place at a time:
//
//   - claimed (ClaimedName) is the newest finalising version the status
//     loop has consumed, written before the transaction that consumes it.
//     Every version the sink parks was claimed first, by the status loop.
//   - latest (LatestName) is the newest version published, written after
//     the commit beside the version's published marker: where a reader of
//     the archive finds the envelope's current manifest.
//
// The status loop finalises a version at once only when the claimed
// version before it is published (or there is none); otherwise an earlier
// version may be parked or being tried, and it parks this one too. The
// status loop parks an envelope's versions on one retry partition
// (parkPartition), whose batches run one at a time: so the earlier
// version's batch commits before the later one is tried. The retry loop
// drops (tombstones) a parked version older than the envelope's claimed
// or latest version, before trying it and again before publishing it,
// and both loops try only the newest version of an envelope in a batch.
//
// Crashes: a claim is written before the transaction that consumes its
// status record, which stays on the status topic until a transaction
// finalises, parks or dead-letters it; so a claim that drops an older
// version always has its own version finalised in the end, and a claim
// whose transaction aborted makes its version's next consumption park it
// (a detour through the retry topic, never a loss). A published marker or
// latest lost to a crash after the commit costs the same detour.
//
// A dead letter replayed (ReplayRecord, produced with RetryPartitioner)
// lands on its envelope's retry partition too, and is tried in turn with
// the envelope's parked versions: dropped like them when a newer version
// was claimed or published. What this does not order: versions parked
// on either side of an increase in the retry topic's partitions, which
// moves an envelope's retry partition (a version parked again stays on
// the partition it was on).

// ClaimedName is the archive marker holding the newest finalising version
// of an envelope the sink has consumed.
func ClaimedName(envelopeID string) string { return fmt.Sprintf("manifests/%s/claimed", envelopeID) }

// LatestName is the archive marker holding the newest version of an
// envelope whose finalized record was committed: its manifest is
// ManifestName(envelopeID, that version).
func LatestName(envelopeID string) string { return fmt.Sprintf("manifests/%s/latest", envelopeID) }

// readVersion reads a version marker: 0 when there is none.
func (s *Sink) readVersion(ctx context.Context, name string) (int64, error) {
	raw, err := s.cfg.Archive.Get(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, &archiveError{err}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, &archiveError{fmt.Errorf("marker %s: %w", name, err)}
	}
	return v, nil
}

// raiseVersion writes v into the marker name unless it holds v or more.
// Each marker has one writer at a time (the status loop's owner of the
// envelope's partition, or the retry partition's), so the read and the
// write need no lock.
func (s *Sink) raiseVersion(ctx context.Context, name string, v int64) error {
	cur, err := s.readVersion(ctx, name)
	if err != nil {
		return err
	}
	if cur >= v {
		return nil
	}
	return s.writeVersion(ctx, name, v)
}

// writeVersion writes v into the marker name, whatever it holds: for a
// writer that knows it holds less (the status loop's claims, whose
// marker it read in the same batch).
func (s *Sink) writeVersion(ctx context.Context, name string, v int64) error {
	if _, err := s.cfg.Archive.Put(ctx, name, fmt.Appendf(nil, "%d\n", v)); err != nil {
		return &archiveError{err}
	}
	return nil
}

// versions reads an envelope's claimed and latest versions.
func (s *Sink) versions(ctx context.Context, envelopeID string) (claimed, latest int64, err error) {
	if claimed, err = s.readVersion(ctx, ClaimedName(envelopeID)); err != nil {
		return 0, 0, err
	}
	if latest, err = s.readVersion(ctx, LatestName(envelopeID)); err != nil {
		return 0, 0, err
	}
	return claimed, latest, nil
}

// parkPartition is the retry partition of every version of an envelope
// the status loop parks: one partition, so one batch at a time.
func (s *Sink) parkPartition(envelopeID string) int32 {
	return RetryPartition(envelopeID, s.retryPartitions)
}

// RetryPartition is the partition, of a retry topic of n, that every
// parked version of the envelope with envelopeID goes to: the status loop
// parks there, and a replayed dead letter (ReplayRecord, produced with
// RetryPartitioner) too, so the versions of one envelope are tried one
// batch at a time.
func RetryPartition(envelopeID string, n int) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(envelopeID))
	return int32(h.Sum32() % uint32(max(n, 1)))
}

// RetryPartitioner partitions the records of the retry topic called topic
// by the envelope of their key (ParkKey: "<envelope id>@<version>"), and
// every other record by the hash of its key, as the services do.
func RetryPartitioner(topic string) kgo.Partitioner {
	byKey := kgo.StickyKeyPartitioner(nil)
	return kgo.BasicConsistentPartitioner(func(t string) func(*kgo.Record, int) int {
		if t != topic {
			tp := byKey.ForTopic(t)
			return tp.Partition
		}
		return func(r *kgo.Record, n int) int {
			id := string(r.Key)
			if i := strings.LastIndexByte(id, '@'); i >= 0 {
				id = id[:i]
			}
			return int(RetryPartition(id, n))
		}
	})
}

// supersede drops j, a version older than newer: nothing is finalised
// for it, and a parked one is tombstoned.
func (s *Sink) supersede(j *job, b *batchState, fromRetry bool, newer int64) {
	s.log.Info("envelope version superseded by a later one; not finalised", "envelope_id", j.ch.EnvelopeID,
		"version", j.ch.Version, "status", j.ch.Status, "newer_version", newer, "parked", fromRetry)
	b.add(&b.superseded, string(j.ch.Status))
	if fromRetry {
		j.out = append(j.out, s.tombstone(j.rec))
		b.add(&b.resolved, string(j.rec.Key))
	}
}
