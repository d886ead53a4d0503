package store

// SetBeforeWrite makes f run between each batch's read and its write.
func (s *Store) SetBeforeWrite(f func()) { s.beforeWrite = f }
