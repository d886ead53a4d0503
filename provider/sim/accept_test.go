package sim_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
)

// plainDialect sends one webhook, for envelope.sent, and judges no answer:
// the engine's default (any 2xx) applies.
type plainDialect struct {
	msg func(sim.MessageFunc) sim.Message
}

func (plainDialect) Handler(*sim.Simulator) http.Handler { return http.NotFoundHandler() }

func (plainDialect) EnvelopeID(seq uint64, _ string) string { return fmt.Sprintf("acc-%d", seq) }

func (d plainDialect) Webhooks(t sim.Transition) []sim.Message {
	if t.Type != "envelope.sent" {
		return nil
	}
	m := sim.MessageFunc(func(int, time.Time) ([]byte, http.Header) { return []byte(`{"id":"` + t.ID + `"}`), nil })
	if d.msg != nil {
		return []sim.Message{d.msg(m)}
	}
	return []sim.Message{m}
}

// pickyDialect accepts only a 200 whose body says "ok", as Dropbox Sign
// wants its magic sentence.
type pickyDialect struct{ plainDialect }

func (pickyDialect) Accepted(status int, body []byte) bool {
	return status == http.StatusOK && strings.Contains(string(body), "ok")
}

// lenientMessage accepts any answer at all, overriding its dialect.
type lenientMessage struct{ sim.MessageFunc }

func (lenientMessage) Accepted(int, []byte) bool { return true }

type answer struct {
	code int
	body string
}

// scripted answers each attempt from its script (the last answer
// repeating) and counts the attempts.
type scripted struct {
	mu       sync.Mutex
	script   []answer
	attempts int
}

func (sc *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	sc.mu.Lock()
	a := sc.script[min(sc.attempts, len(sc.script)-1)]
	sc.attempts++
	sc.mu.Unlock()
	w.WriteHeader(a.code)
	_, _ = io.WriteString(w, a.body)
}

// TestDialectJudgesTheAnswer: a delivery counts as delivered when the
// Message's Acceptor, else the Dialect's, else any 2xx says so; any other
// answer is retried like a failed one.
func TestDialectJudgesTheAnswer(t *testing.T) {
	ok200, nope200 := answer{200, "ok"}, answer{200, "nope"}
	cases := []struct {
		name     string
		dialect  sim.Dialect
		script   []answer
		attempts int
	}{
		{"default takes any 200", plainDialect{}, []answer{nope200}, 1},
		{"default takes 204 without a body", plainDialect{}, []answer{{204, ""}}, 1},
		{"default retries a 500", plainDialect{}, []answer{{500, "ok"}, nope200}, 2},
		{"dialect retries a 200 without its body", pickyDialect{}, []answer{nope200, {200, ""}, ok200}, 3},
		{"dialect retries a 500 with its body", pickyDialect{}, []answer{{500, "ok"}, ok200}, 2},
		{"dialect takes its body at once", pickyDialect{}, []answer{ok200}, 1},
		{"message overrides its dialect", pickyDialect{plainDialect{msg: func(m sim.MessageFunc) sim.Message { return lenientMessage{m} }}},
			[]answer{{500, "no"}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := &scripted{script: c.script}
			hook := httptest.NewServer(sc)
			t.Cleanup(hook.Close)
			s := fakes.Sim(t, sim.Config{Dialect: c.dialect, WebhookURL: hook.URL, Step: time.Hour,
				RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			spec := sim.EnvelopeSpec{Key: "k", Subject: "s", Documents: []sim.Document{{Name: "d", Content: []byte("x")}},
				Recipients: []sim.RecipientSpec{{ID: "1", Name: "A", Email: "a@example.com"}}}
			if _, err := s.CreateEnvelope(spec, true); err != nil {
				t.Fatal(err)
			}
			providertest.WaitFor(t, 10*time.Second, "the webhook delivered", func() bool { return s.Stats().Delivered == 1 })
			st := s.Stats()
			sc.mu.Lock()
			got := sc.attempts
			sc.mu.Unlock()
			if got != c.attempts || st.Attempts != int64(c.attempts) || st.FailedAttempts != int64(c.attempts-1) || st.Lost != 0 {
				t.Fatalf("receiver saw %d attempts, stats %+v; want %d attempts", got, st, c.attempts)
			}
		})
	}
}

// deferDialect sends two webhooks for envelope.sent: one at once, one
// deferred by later.
type deferDialect struct {
	plainDialect
	later time.Duration
}

type deferredMessage struct {
	sim.MessageFunc
	later time.Duration
}

func (m deferredMessage) Defer() time.Duration { return m.later }

func (d deferDialect) Webhooks(t sim.Transition) []sim.Message {
	if t.Type != "envelope.sent" {
		return nil
	}
	body := func(name string) sim.MessageFunc {
		return func(int, time.Time) ([]byte, http.Header) { return []byte(name), nil }
	}
	return []sim.Message{body("now"), deferredMessage{body("later"), d.later}}
}

// arrivals records when each body arrived.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.at[string(b)] = time.Now()
	a.mu.Unlock()
}

func (a *arrivals) get(name string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.at[name]
	return t, ok
}

// TestDeferredMessageWaits: a Deferred message is not attempted before its
// Defer has passed, while the transition's other webhook goes at once.
func TestDeferredMessageWaits(t *testing.T) {
	for _, later := range []time.Duration{time.Hour, 50 * time.Millisecond} {
		t.Run(later.String(), func(t *testing.T) {
			a := &arrivals{at: map[string]time.Time{}}
			hook := httptest.NewServer(a)
			t.Cleanup(hook.Close)
			s := fakes.Sim(t, sim.Config{Dialect: deferDialect{later: later}, WebhookURL: hook.URL, Step: time.Hour,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			spec := sim.EnvelopeSpec{Key: "k", Documents: []sim.Document{{Name: "d", Content: []byte("x")}},
				Recipients: []sim.RecipientSpec{{ID: "1", Name: "A", Email: "a@example.com"}}}
			sent := time.Now()
			if _, err := s.CreateEnvelope(spec, true); err != nil {
				t.Fatal(err)
			}
			providertest.WaitFor(t, 10*time.Second, "the immediate webhook", func() bool { _, ok := a.get("now"); return ok })
			if later == time.Hour {
				if _, ok := a.get("later"); ok || s.Stats().Attempts != 1 {
					t.Fatalf("the deferred webhook went early: stats %+v", s.Stats())
				}
				return
			}
			providertest.WaitFor(t, 10*time.Second, "the deferred webhook", func() bool { _, ok := a.get("later"); return ok })
			if at, _ := a.get("later"); at.Sub(sent) < later {
				t.Fatalf("the deferred webhook arrived %s after the transition, before its %s", at.Sub(sent), later)
			}
		})
	}
}
