// Package devregistry makes the development stack's in-memory Schema
// Registry (srfake) refuse what a Confluent Schema Registry refuses: a
// schema that breaks its subject's compatibility level.
package devregistry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// maxBody bounds a registration request, as srfake does.
const maxBody = 1 << 20

// Compatible returns next, a Schema Registry's handler, with Avro
// compatibility enforced the way a Confluent registry enforces it:
//
//   - POST /subjects/{subject}/versions with a schema the subject does not
//     hold yet is checked against the subject's versions at the subject's
//     compatibility level (its own, else the global one); a schema that
//     breaks it is answered 409 with {"error_code":409,"message":...} and
//     not registered.
//   - POST /compatibility/subjects/{subject}/versions[/{version}] answers
//     is_compatible from the same check (srfake always answers true).
//
// Every other request, and every non-Avro schema, goes to next unchanged.
// Registrations are checked and passed on one at a time, so two racing
// schemas cannot both be checked against the same latest version.
func Compatible(next http.Handler) http.Handler {
	h := &handler{next: next}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subjects/{subject}/versions", h.register)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", h.check)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", h.check)
	mux.Handle("/", next)
	return mux
}

type handler struct {
	next http.Handler
	mu   sync.Mutex // one registration at a time
}

// IncompatibleCode is the Confluent error code (and HTTP status) of a
// schema that breaks its subject's compatibility level.
const IncompatibleCode = http.StatusConflict

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	body, schema, ok := readSchema(w, r)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	subject := r.PathValue("subject")
	if schema.Type == sr.TypeAvro && !h.holds(r, subject, body) {
		level, versions, err := h.against(r, subject, "")
		if err != nil {
			writeError(w, http.StatusInternalServerError, sr.ErrStoreError.Code, err.Error())
			return
		}
		if problems := incompatibilities(level, schema.Schema, versions); len(problems) > 0 {
			writeError(w, IncompatibleCode, IncompatibleCode, fmt.Sprintf(
				"Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]; compatibility level: %s",
				subject, strings.Join(problems, "; "), level))
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.next.ServeHTTP(w, r)
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	_, schema, ok := readSchema(w, r)
	if !ok {
		return
	}
	if schema.Type != sr.TypeAvro {
		writeJSON(w, http.StatusOK, map[string]any{"is_compatible": true})
		return
	}
	subject := r.PathValue("subject")
	level, versions, err := h.against(r, subject, r.PathValue("version"))
	if err != nil {
		writeError(w, http.StatusNotFound, sr.ErrVersionNotFound.Code, err.Error())
		return
	}
	problems := incompatibilities(level, schema.Schema, versions)
	resp := map[string]any{"is_compatible": len(problems) == 0}
	if r.URL.Query().Get("verbose") == "true" {
		resp["messages"] = append([]string{}, problems...)
	}
	writeJSON(w, http.StatusOK, resp)
}

// readSchema reads the request's schema, keeping its bytes to pass on.
func readSchema(w http.ResponseWriter, r *http.Request) ([]byte, sr.Schema, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, err.Error())
		return nil, sr.Schema{}, false
	}
	var s sr.Schema
	if err := json.Unmarshal(body, &s); err != nil {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, err.Error())
		return nil, sr.Schema{}, false
	}
	return body, s, true
}

// version is one registered version of a subject.
type version struct {
	n      int
	schema string
}

// holds reports whether subject already has the schema in body: then
// registering it is a lookup, never refused.
func (h *handler) holds(r *http.Request, subject string, body []byte) bool {
	code, _ := h.call(r, http.MethodPost, "/subjects/"+url.PathEscape(subject), body)
	return code == http.StatusOK
}

// against returns the compatibility level of subject and the versions a new
// schema is checked against: only one (only) when asked, else every one,
// oldest first (the level decides which of them count). A subject without
// versions gives none.
func (h *handler) against(r *http.Request, subject, only string) (sr.CompatibilityLevel, []version, error) {
	var level sr.CompatibilityLevel
	code, raw := h.call(r, http.MethodGet, "/config/"+url.PathEscape(subject)+"?defaultToGlobal=true", nil)
	var cfg struct {
		Level sr.CompatibilityLevel `json:"compatibilityLevel"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &cfg) != nil {
		code, raw = h.call(r, http.MethodGet, "/config", nil)
		if code != http.StatusOK || json.Unmarshal(raw, &cfg) != nil {
			return 0, nil, fmt.Errorf("compatibility level of %q: %d %s", subject, code, raw)
		}
	}
	level = cfg.Level
	var ns []string
	if only != "" {
		ns = []string{only}
	} else {
		code, raw = h.call(r, http.MethodGet, "/subjects/"+url.PathEscape(subject)+"/versions", nil)
		if code == http.StatusNotFound {
			return level, nil, nil
		}
		var ints []int
		if code != http.StatusOK || json.Unmarshal(raw, &ints) != nil {
			return 0, nil, fmt.Errorf("versions of %q: %d %s", subject, code, raw)
		}
		for _, n := range ints {
			ns = append(ns, strconv.Itoa(n))
		}
	}
	var out []version
	for _, n := range ns {
		code, raw = h.call(r, http.MethodGet, "/subjects/"+url.PathEscape(subject)+"/versions/"+n, nil)
		var ss sr.SubjectSchema
		if code != http.StatusOK || json.Unmarshal(raw, &ss) != nil {
			return 0, nil, fmt.Errorf("version %s of %q: %d %s", n, subject, code, raw)
		}
		if ss.Type == sr.TypeAvro {
			out = append(out, version{ss.Version, ss.Schema.Schema})
		}
	}
	return level, out, nil
}

// call makes a request of next on behalf of r (its credentials and
// context) and returns the status and body.
func (h *handler) call(r *http.Request, method, target string, body []byte) (int, []byte) {
	req, err := http.NewRequestWithContext(r.Context(), method, target, bytes.NewReader(body))
	if err != nil {
		return http.StatusInternalServerError, []byte(err.Error())
	}
	req.Header = r.Header.Clone()
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// incompatibilities lists how schema breaks level against versions (oldest
// first); none when it is compatible.
func incompatibilities(level sr.CompatibilityLevel, schema string, versions []version) []string {
	if len(versions) == 0 || level == sr.CompatNone {
		return nil
	}
	next, err := parse(schema)
	if err != nil {
		return []string{"new schema: " + err.Error()}
	}
	var backward, forward, transitive bool
	switch level {
	case sr.CompatBackward:
		backward = true
	case sr.CompatBackwardTransitive:
		backward, transitive = true, true
	case sr.CompatForward:
		forward = true
	case sr.CompatForwardTransitive:
		forward, transitive = true, true
	case sr.CompatFull:
		backward, forward = true, true
	case sr.CompatFullTransitive:
		backward, forward, transitive = true, true, true
	default:
		return nil
	}
	if !transitive {
		versions = versions[len(versions)-1:]
	}
	compat := avro.NewSchemaCompatibility()
	var out []string
	for _, v := range versions {
		old, err := parse(v.schema)
		if err != nil {
			out = append(out, fmt.Sprintf("version %d does not parse: %v", v.n, err))
			continue
		}
		if backward {
			if err := compat.Compatible(next, old); err != nil {
				out = append(out, fmt.Sprintf("the new schema cannot read data written with version %d: %v", v.n, err))
			}
		}
		if forward {
			if err := compat.Compatible(old, next); err != nil {
				out = append(out, fmt.Sprintf("version %d cannot read data written with the new schema: %v", v.n, err))
			}
		}
	}
	return out
}

// parse parses an Avro schema into a cache of its own, so that versions
// repeating the same named types never collide.
func parse(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers a Confluent-style error.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"error_code": code, "message": msg})
}
