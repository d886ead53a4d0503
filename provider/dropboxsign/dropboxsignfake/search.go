package dropboxsignfake

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/esignflow/esignflow/provider/sim"
)

// The list endpoint's query, as Dropbox Sign's search reference describes
// it (PROVIDER-APIS.md 2.4): terms, field:term or bare, joined by AND and
// OR (case sensitive; AND binds tighter, and terms side by side are
// ANDed). A term matches a word of the field case-insensitively, or the
// field's whole value; "a quoted phrase" matches within the field; a
// trailing * matches a word's prefix; a leading * is refused. A bare term
// is matched against title, subject, message, metadata values, signers
// (to) and file names. Fields: metadata, title, subject, message, to,
// from (me or the account's address: every request is the account's),
// filename, complete, declined, test_mode (true or false). Other fields
// (created, template, awaiting_my_signature) are refused with 400: the
// simulator does not search them. The fielded metadata syntax
// (metadata:value) is the dialect's reading of the reference, which does
// not show it.

// query is an OR of ANDs of terms.
type query [][]term

type term struct {
	field  string // "" for a bare term
	value  string // lower-cased, without quotes or the trailing *
	phrase bool
	prefix bool
}

var searchFields = map[string]bool{"metadata": true, "title": true, "subject": true, "message": true, "to": true,
	"from": true, "filename": true, "complete": true, "declined": true, "test_mode": true}

// parseQuery reads q; an empty q matches everything.
func parseQuery(q string) (query, *apiError) {
	var out query
	var and []term
	for _, w := range splitQuery(q) {
		switch w {
		case "AND":
			continue
		case "OR":
			if len(and) > 0 {
				out = append(out, and)
			}
			and = nil
			continue
		}
		var t term
		if f, v, ok := strings.Cut(w, ":"); ok && !strings.HasPrefix(w, `"`) {
			if !searchFields[f] {
				return nil, badRequest("query", "The simulator does not search the field "+f+".")
			}
			t.field, w = f, v
		}
		if strings.HasPrefix(w, `"`) && strings.HasSuffix(w, `"`) && len(w) >= 2 {
			t.phrase, w = true, w[1:len(w)-1]
		} else if strings.HasSuffix(w, "*") {
			t.prefix, w = true, strings.TrimSuffix(w, "*")
		}
		if strings.HasPrefix(w, "*") {
			return nil, badRequest("query", "Leading wildcards (*) are not valid.")
		}
		if w == "" {
			continue
		}
		t.value = strings.ToLower(w)
		and = append(and, t)
	}
	if len(and) > 0 {
		out = append(out, and)
	}
	return out, nil
}

// splitQuery splits q at spaces, keeping "quoted phrases" (after a field
// name too) whole.
func splitQuery(q string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range q {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// matches reports whether e is found by q.
func (q query) matches(e *sim.EnvelopeInfo, account string) bool {
	if len(q) == 0 {
		return true
	}
	for _, and := range q {
		all := true
		for _, t := range and {
			if !t.matches(e, account) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (t term) matches(e *sim.EnvelopeInfo, account string) bool {
	flag := func(b bool) bool { return t.value == strconv.FormatBool(b) }
	switch t.field {
	case "complete":
		return flag(e.Status == "completed")
	case "declined":
		return flag(e.Status == "declined")
	case "test_mode":
		return flag(e.Attrs[attrTestMode] == "true")
	case "from":
		return t.value == "me" || t.value == strings.ToLower(account)
	}
	for _, text := range fieldTexts(e, t.field) {
		if t.matchText(text) {
			return true
		}
	}
	return false
}

// fieldTexts are the texts a field (or a bare term, field "") searches.
func fieldTexts(e *sim.EnvelopeInfo, field string) []string {
	var out []string
	add := func(f string, texts ...string) {
		if field == "" || field == f {
			out = append(out, texts...)
		}
	}
	add("title", e.Attrs[attrTitle])
	add("subject", e.Subject)
	add("message", e.Attrs[attrMessage])
	for _, v := range e.Metadata {
		add("metadata", v)
	}
	for _, r := range e.Recipients {
		add("to", r.Email, r.Name)
	}
	for _, d := range e.Documents {
		add("filename", d.Name)
	}
	return out
}

func (t term) matchText(text string) bool {
	text = strings.ToLower(text)
	switch {
	case t.phrase:
		return strings.Contains(text, t.value)
	case text == t.value:
		return true
	}
	for _, w := range strings.Fields(text) {
		if w == t.value || (t.prefix && strings.HasPrefix(w, t.value)) {
			return true
		}
	}
	return t.prefix && strings.HasPrefix(text, t.value)
}

// textFields are the fields that search texts (fieldTexts), which are
// what a bare term searches: the ones the index holds.
var textFields = []string{"title", "subject", "message", "metadata", "to", "filename"}

// indexed is an exact term (field "" for a bare one) that every match of
// q must carry, when there is one: the candidates are then the index's,
// not every request.
func (q query) indexed() (field, token string, ok bool) {
	if len(q) != 1 {
		return "", "", false
	}
	for _, t := range q[0] {
		if t.phrase || t.prefix {
			continue
		}
		if t.field == "" || slices.Contains(textFields, t.field) {
			return t.field, t.value, true
		}
	}
	return "", "", false
}

// searchIndex maps each text field's values (fieldTexts), and each word
// of them, lower-cased, to the signature requests that carry them: under
// the field's name and under "" (a bare term's). What a request's texts
// say (title, subject, message, metadata, signers, file names) never
// changes after its send, and requests are never removed, so it only
// grows. It is filled from the engine on first use (the engine may have
// loaded a state file) and by every send after; an id may be listed
// twice, which EnvelopesByID counts once. A candidate is still matched
// against the whole query: the index only spares the scan. The zero
// value is an empty index.
type searchIndex struct {
	mu      sync.Mutex
	built   bool
	byToken map[indexKey][]string
}

type indexKey struct{ field, token string }

func (ix *searchIndex) add(e sim.EnvelopeInfo) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.addLocked(&e)
}

func (ix *searchIndex) addLocked(e *sim.EnvelopeInfo) {
	if ix.byToken == nil {
		ix.byToken = map[indexKey][]string{}
	}
	seen := map[indexKey]bool{}
	put := func(k indexKey) {
		if !seen[k] {
			seen[k] = true
			ix.byToken[k] = append(ix.byToken[k], e.ID)
		}
	}
	for _, f := range textFields {
		for _, text := range fieldTexts(e, f) {
			text = strings.ToLower(text)
			for _, tok := range append(strings.Fields(text), text) {
				put(indexKey{f, tok})
				put(indexKey{"", tok})
			}
		}
	}
}

// lookup returns the ids carrying token in field ("" for any text field),
// building the index from s first if need be.
func (ix *searchIndex) lookup(s *sim.Simulator, field, token string) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.built {
		for _, e := range s.Envelopes(nil) {
			ix.addLocked(&e)
		}
		ix.built = true
	}
	return append([]string(nil), ix.byToken[indexKey{field, token}]...)
}
