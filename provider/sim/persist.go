package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// snapshot is the simulator's state on disk (Config.StateFile), so that a
// restarted simulator — after a clean stop or a kill -9 — still knows its
// envelopes. Webhooks waiting to be
// delivered are not kept: like a provider that lost its queue, the
// reconciler's polls make up for them.
type snapshot struct {
	Seq       uint64               `json:"seq"`
	Envelopes []envelopeSnapshot   `json:"envelopes"`
	Keys      map[string]keyRecord `json:"keys"`
}

type keyRecord struct {
	BodyHash    []byte `json:"body_hash"`
	Code        int    `json:"code"`
	Body        []byte `json:"body"`
	ContentType string `json:"content_type"`
}

type envelopeSnapshot struct {
	ID         string              `json:"id"`
	Key        string              `json:"key"`
	Status     string              `json:"status"`
	StatusAt   time.Time           `json:"status_at"`
	CreatedAt  time.Time           `json:"created_at"`
	Subject    string              `json:"subject"`
	Metadata   map[string]string   `json:"metadata"`
	Documents  []Document          `json:"documents"`
	Recipients []recipientSnapshot `json:"recipients"`
	Fate       string              `json:"fate"`
	Events     uint64              `json:"events"`
	Reason     string              `json:"reason,omitempty"`
	Attrs      map[string]string   `json:"attrs,omitempty"`
	History    []Change            `json:"history,omitempty"`
}

type recipientSnapshot struct {
	recipient
	Status     string            `json:"status"`
	StatusAt   time.Time         `json:"status_at"`
	IP         string            `json:"ip"`
	Agent      string            `json:"agent"`
	VerifiedAt *time.Time        `json:"verified_at"`
	Attrs      map[string]string `json:"attrs,omitempty"`
	History    []Change          `json:"history,omitempty"`
}

// save writes the state to path atomically.
func (s *Simulator) save(path string) error {
	s.mu.Lock()
	snap := snapshot{Seq: s.seq, Keys: map[string]keyRecord{}}
	for k, e := range s.keys {
		if e.done {
			snap.Keys[k] = keyRecord{BodyHash: e.bodyHash[:], Code: e.code, Body: e.body, ContentType: e.contentType}
		}
	}
	for _, e := range s.envelopes {
		es := envelopeSnapshot{ID: e.id, Key: e.key, Status: e.status, StatusAt: e.statusAt, CreatedAt: e.createdAt, Subject: e.subject,
			Metadata: e.metadata, Documents: e.documents, Fate: e.fate, Events: e.events, Reason: e.reason, Attrs: e.attrs, History: e.history}
		for _, r := range e.recipients {
			es.Recipients = append(es.Recipients, recipientSnapshot{recipient: *r, Status: r.status, StatusAt: r.statusAt, IP: r.ip, Agent: r.agent, VerifiedAt: r.verifiedAt,
				Attrs: r.attrs, History: r.history})
		}
		snap.Envelopes = append(snap.Envelopes, es)
	}
	s.mu.Unlock()
	raw, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, raw); err != nil {
		return fmt.Errorf("sim: save state %s: %w", path, err)
	}
	s.stats.saves.Add(1)
	return nil
}

// writeAtomic replaces path with raw so that a crash at any instant leaves
// either the old file or the new one, complete: it writes a temporary file
// beside it, fsyncs it, renames it over path and fsyncs the directory.
func writeAtomic(path string, raw []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// changed notes that the state changed and should be saved; it never
// blocks, so it may be called with s.mu held.
func (s *Simulator) changed() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// persist saves the state to path after every change, at most every
// SaveEvery (changes in between go into one save), until ctx ends. A save
// that fails is logged and tried again at the next change or tick.
func (s *Simulator) persist(ctx context.Context, path string) {
	var last time.Time
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		case <-retry.C:
		}
		if wait := s.cfg.SaveEvery - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// Drain the signal of changes made while waiting: this save
		// includes them.
		select {
		case <-s.dirty:
		default:
		}
		last = time.Now()
		if err := s.save(path); err != nil {
			s.stats.saveErrors.Add(1)
			s.log.Error("saving simulator state", "path", path, "err", err)
			retry.Reset(s.cfg.SaveEvery)
		}
	}
}

// load reads the state from path, if there is one, and resumes every
// envelope still in progress.
func (s *Simulator) load(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sim: load state: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return fmt.Errorf("sim: state %s: %w", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = snap.Seq
	for k, r := range snap.Keys {
		e := &idemEntry{done: true, code: r.Code, body: r.Body, contentType: r.ContentType}
		copy(e.bodyHash[:], r.BodyHash)
		s.keys[k] = e
	}
	for _, es := range snap.Envelopes {
		e := &envelope{id: es.ID, key: es.Key, status: es.Status, statusAt: es.StatusAt, createdAt: es.CreatedAt, subject: es.Subject,
			metadata: es.Metadata, documents: es.Documents, fate: es.Fate, events: es.Events, reason: es.Reason, attrs: es.Attrs, history: es.History}
		for _, rs := range es.Recipients {
			r := rs.recipient
			r.status, r.statusAt, r.ip, r.agent, r.verifiedAt = rs.Status, rs.StatusAt, rs.IP, rs.Agent, rs.VerifiedAt
			r.attrs, r.history = rs.Attrs, rs.History
			e.recipients = append(e.recipients, &r)
		}
		s.add(e)
		if e.status == "created" || terminal(e.status) {
			continue
		}
		for _, r := range e.recipients {
			for i, name := range steps {
				if r.status == name && i >= 1 && i < len(steps)-1 {
					s.schedule(e.id, r.ID, i)
				}
			}
		}
		if e.fate == "voided" || e.fate == "expired" {
			id := e.id
			s.after(s.jitter("cut-again", id), func() { s.cut(id) })
		}
	}
	return nil
}
