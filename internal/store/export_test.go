package store

// SetBeforeWrite makes f run between each batch's read and its write.
func (s *Store) SetBeforeWrite(f func()) { s.beforeWrite = f }

// SetWorkers makes each batch's events be applied on up to n goroutines,
// whatever GOMAXPROCS is.
func (s *Store) SetWorkers(n int) { s.workers = n }
