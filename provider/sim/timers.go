package sim

import (
	"container/heap"
	"context"
	"time"
)

// timed is one piece of work due at a time; seq keeps equal times FIFO.
type timed struct {
	at  time.Time
	seq uint64
	fn  func()
}

type timerHeap []timed

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timed)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// after runs fn on the scheduler goroutine once d has passed. It may be
// called with or without s.mu held; work still pending when the simulator
// stops is dropped.
func (s *Simulator) after(d time.Duration, fn func()) {
	s.tmu.Lock()
	s.tseq++
	heap.Push(&s.timers, timed{at: time.Now().Add(d), seq: s.tseq, fn: fn})
	s.tmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// schedulerLoop runs due work until ctx ends. One goroutine runs every
// lifecycle step and delivery hand-off, so the simulator's memory is one
// heap entry per pending step, not a goroutine.
func (s *Simulator) schedulerLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.tmu.Lock()
		now := time.Now()
		var due []func()
		for s.timers.Len() > 0 && !s.timers[0].at.After(now) {
			due = append(due, heap.Pop(&s.timers).(timed).fn)
		}
		wait := time.Hour
		if s.timers.Len() > 0 {
			wait = s.timers[0].at.Sub(now)
		}
		s.tmu.Unlock()
		for _, fn := range due {
			if ctx.Err() != nil {
				return
			}
			fn()
		}
		if len(due) > 0 {
			continue
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}
