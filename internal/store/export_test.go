package store

// SetBeforeWrite makes f run between each batch's read and its write.
func (s *Store) SetBeforeWrite(f func()) { s.beforeWrite = f }

// DedupKey is the key of the dedup record of event id on envelope env in
// partition p.
func (s *Store) DedupKey(p int32, env, id string) string {
	return s.dedupPrefix(p) + dedupSuffix(env, id)
}

// DedupLogKey is the key of partition p's dedup log.
func (s *Store) DedupLogKey(p int32) string { return s.dedupLogKey(p) }

// EnvKey is the key of envelope id's state in partition p.
func (s *Store) EnvKey(p int32, id string) string { return s.envKey(p, id) }

// ActiveKey is the key of partition p's index of envelopes not settled.
func (s *Store) ActiveKey(p int32) string { return s.activeKey(p) }

// CheckpointKey is the key of partition p's checkpoint.
func (s *Store) CheckpointKey(p int32) string { return s.ckptKey(p) }

// DedupSuffix is a dedup key after its partition's "dedup:" prefix, as the
// dedup log names it.
func DedupSuffix(env, id string) string { return dedupSuffix(env, id) }

// MissingKey is the key of partition p's not-found records.
func (s *Store) MissingKey(p int32) string { return s.missingKey(p) }
