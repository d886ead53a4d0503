package dropboxsignfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sendRequest is what the dialect reads of a SignatureRequestSendRequest,
// whatever its encoding.
type sendRequest struct {
	Title, Subject string
	Message        *string
	Signers        []signerIn
	FileURLs       []string
	Files          []fileIn
	Metadata       map[string]string
	TestMode       bool
	ExpiresAt      *int64
}

type signerIn struct {
	Name, Email string
	Order       *int
}

type fileIn struct {
	Name    string
	Content []byte
}

// Limits of the send request (PROVIDER-APIS.md 2.2).
const (
	maxTitle, maxSubject, maxMessage = 255, 255, 5000
	maxMetadataKeys                  = 10
	maxMetadataKey                   = 40
	maxMetadataValue                 = 1000
)

// parseSend reads a send request: JSON, multipart/form-data or a
// urlencoded form.
func parseSend(contentType string, body []byte) (sendRequest, *apiError) {
	mt, params, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "multipart/form-data":
		form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(maxBody)
		if err != nil {
			return sendRequest{}, badRequest("", "The multipart body could not be read: "+err.Error())
		}
		defer func() { _ = form.RemoveAll() }()
		var files []fileIn
		names := make([]string, 0, len(form.File))
		for name := range form.File {
			names = append(names, name)
		}
		sortIndexed(names)
		for _, name := range names {
			if !fileField.MatchString(name) {
				return sendRequest{}, badRequest(name, "Unknown file field "+name+": use files[N].")
			}
			for _, fh := range form.File[name] {
				f, err := fh.Open()
				if err != nil {
					return sendRequest{}, badRequest(name, err.Error())
				}
				content, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					return sendRequest{}, badRequest(name, err.Error())
				}
				files = append(files, fileIn{Name: fh.Filename, Content: content})
			}
		}
		in, apiErr := fromForm(form.Value)
		in.Files = files
		return in, apiErr
	case mt == "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return sendRequest{}, badRequest("", "The form body could not be read: "+err.Error())
		}
		return fromForm(vals)
	default: // JSON, the spec's other encoding; a missing type is tried as JSON
		return fromJSON(body)
	}
}

var (
	fileField   = regexp.MustCompile(`^files?\[\d*\]$`)
	signerField = regexp.MustCompile(`^signers\[(\d+)\]\[(\w+)\]$`)
	listField   = regexp.MustCompile(`^file_urls(\[\d*\])?$`)
	metaField   = regexp.MustCompile(`^metadata\[([^\]]+)\]$`)
)

// sortIndexed sorts bracket-named fields by their index (files[10] after
// files[9]).
func sortIndexed(names []string) {
	idx := func(s string) int {
		i := strings.IndexByte(s, '[')
		n, err := strconv.Atoi(strings.TrimSuffix(s[i+1:], "]"))
		if i < 0 || err != nil {
			return -1
		}
		return n
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := idx(names[i]), idx(names[j]); a != b {
			return a < b
		}
		return names[i] < names[j]
	})
}

// fromForm reads the bracket-named fields of a form: signers[0][name],
// file_urls[0] or file_urls[], metadata[key]; signers and metadata may
// also come as one JSON-encoded field each, as the SDKs send them.
func fromForm(vals url.Values) (sendRequest, *apiError) {
	in := sendRequest{Title: vals.Get("title"), Subject: vals.Get("subject"), Metadata: map[string]string{}}
	if vals.Has("message") {
		m := vals.Get("message")
		in.Message = &m
	}
	if v := vals.Get("test_mode"); v != "" {
		b, ok := boolish(v)
		if !ok {
			return in, badRequest("test_mode", "test_mode must be true, false, 1 or 0.")
		}
		in.TestMode = b
	}
	if v := vals.Get("expires_at"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return in, badRequest("expires_at", "expires_at must be a Unix time in seconds.")
		}
		in.ExpiresAt = &n
	}
	signers := map[int]*signerIn{}
	var urlNames []string
	for name, vs := range vals {
		switch {
		case name == "signers":
			var js []json.RawMessage
			if err := json.Unmarshal([]byte(vs[0]), &js); err != nil {
				return in, badRequest("signers", "signers must be a JSON array or signers[N][field] fields.")
			}
			for i, raw := range js {
				s, apiErr := signerFromJSON(i, raw)
				if apiErr != nil {
					return in, apiErr
				}
				signers[i] = &s
			}
		case signerField.MatchString(name):
			m := signerField.FindStringSubmatch(name)
			i, _ := strconv.Atoi(m[1])
			s := signers[i]
			if s == nil {
				s = &signerIn{}
				signers[i] = s
			}
			switch m[2] {
			case "name":
				s.Name = vs[0]
			case "email_address":
				s.Email = vs[0]
			case "order":
				n, err := strconv.Atoi(vs[0])
				if err != nil || n < 0 {
					return in, badRequest(name, name+" must be a non-negative integer.")
				}
				s.Order = &n
			}
		case listField.MatchString(name):
			urlNames = append(urlNames, name)
		case name == "metadata":
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(vs[0]), &raw); err != nil {
				return in, badRequest("metadata", "metadata must be a JSON object or metadata[key] fields.")
			}
			for k, v := range raw {
				in.Metadata[k] = metadataValue(v)
			}
		case metaField.MatchString(name):
			in.Metadata[metaField.FindStringSubmatch(name)[1]] = vs[0]
		}
	}
	sortIndexed(urlNames)
	for _, name := range urlNames {
		in.FileURLs = append(in.FileURLs, vals[name]...)
	}
	idx := make([]int, 0, len(signers))
	for i := range signers {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		in.Signers = append(in.Signers, *signers[i])
	}
	return in, nil
}

// fromJSON reads a JSON send request.
func fromJSON(body []byte) (sendRequest, *apiError) {
	var raw struct {
		Title     string                     `json:"title"`
		Subject   string                     `json:"subject"`
		Message   *string                    `json:"message"`
		Signers   []json.RawMessage          `json:"signers"`
		FileURLs  []string                   `json:"file_urls"`
		Files     json.RawMessage            `json:"files"`
		Metadata  map[string]json.RawMessage `json:"metadata"`
		TestMode  json.RawMessage            `json:"test_mode"`
		ExpiresAt *int64                     `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return sendRequest{}, badRequest("", "The request body is not valid JSON: "+err.Error())
	}
	in := sendRequest{Title: raw.Title, Subject: raw.Subject, Message: raw.Message, FileURLs: raw.FileURLs,
		ExpiresAt: raw.ExpiresAt, Metadata: map[string]string{}}
	if len(raw.Files) > 0 && string(raw.Files) != "null" {
		return in, badRequest("files", "files must be uploaded with multipart/form-data; JSON takes file_urls.")
	}
	if len(raw.TestMode) > 0 && string(raw.TestMode) != "null" {
		b, ok := boolish(strings.Trim(string(raw.TestMode), `"`))
		if !ok {
			return in, badRequest("test_mode", "test_mode must be a boolean.")
		}
		in.TestMode = b
	}
	for i, s := range raw.Signers {
		sg, apiErr := signerFromJSON(i, s)
		if apiErr != nil {
			return in, apiErr
		}
		in.Signers = append(in.Signers, sg)
	}
	for k, v := range raw.Metadata {
		in.Metadata[k] = metadataValue(v)
	}
	return in, nil
}

func signerFromJSON(i int, raw json.RawMessage) (signerIn, *apiError) {
	var s struct {
		Name  string          `json:"name"`
		Email string          `json:"email_address"`
		Order json.RawMessage `json:"order"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return signerIn{}, badRequest(fmt.Sprintf("signers[%d]", i), "A signer must be an object with name and email_address.")
	}
	out := signerIn{Name: s.Name, Email: s.Email}
	if o := strings.Trim(string(s.Order), `"`); o != "" && o != "null" {
		n, err := strconv.Atoi(o)
		if err != nil || n < 0 {
			return out, badRequest(fmt.Sprintf("signers[%d][order]", i), "order must be a non-negative integer.")
		}
		out.Order = &n
	}
	return out, nil
}

// metadataValue is how a metadata value comes back: a string as it is,
// any other JSON value as its text (1234 → "1234").
func metadataValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

func boolish(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "1":
		return true, true
	case "false", "0", "":
		return false, true
	}
	return false, false
}

// validate checks in as Dropbox Sign does, naming the field at fault.
func (in sendRequest) validate(now time.Time) *apiError {
	switch {
	case len(in.Files) > 0 && len(in.FileURLs) > 0:
		return badRequest("files", "This endpoint requires either files or file_urls[], but not both.")
	case len(in.Files) == 0 && len(in.FileURLs) == 0:
		return badRequest("files", "This endpoint requires either files or file_urls[].")
	case len(in.Signers) == 0:
		return badRequest("signers", "At least one signer is required.")
	case len([]rune(in.Title)) > maxTitle:
		return badRequest("title", fmt.Sprintf("title is limited to %d characters.", maxTitle))
	case len([]rune(in.Subject)) > maxSubject:
		return badRequest("subject", fmt.Sprintf("subject is limited to %d characters.", maxSubject))
	case in.Message != nil && len([]rune(*in.Message)) > maxMessage:
		return badRequest("message", fmt.Sprintf("message is limited to %d characters.", maxMessage))
	case len(in.Metadata) > maxMetadataKeys:
		return badRequest("metadata", fmt.Sprintf("metadata is limited to %d keys.", maxMetadataKeys))
	case in.ExpiresAt != nil && *in.ExpiresAt <= now.Unix():
		return badRequest("expires_at", "expires_at must be in the future.")
	}
	for i, u := range in.FileURLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return badRequest(fmt.Sprintf("file_urls[%d]", i), "file_urls must be http or https URLs.")
		}
	}
	for i, f := range in.Files {
		if len(f.Content) == 0 {
			return badRequest(fmt.Sprintf("files[%d]", i), "The file is empty.")
		}
	}
	for k, v := range in.Metadata {
		switch {
		case k == "" || len([]rune(k)) > maxMetadataKey:
			return badRequest("metadata", fmt.Sprintf("Metadata key names are 1 to %d characters long.", maxMetadataKey))
		case len([]rune(v)) > maxMetadataValue:
			return badRequest("metadata["+k+"]", fmt.Sprintf("Metadata values are limited to %d characters.", maxMetadataValue))
		}
	}
	for i, s := range in.Signers {
		switch {
		case strings.TrimSpace(s.Name) == "":
			return badRequest(fmt.Sprintf("signers[%d][name]", i), "A signer's name is required.")
		case s.Email == "":
			return badRequest(fmt.Sprintf("signers[%d][email_address]", i), "A signer's email_address is required.")
		}
		if a, err := mail.ParseAddress(s.Email); err != nil || a.Address != s.Email {
			return badRequest(fmt.Sprintf("signers[%d][email_address]", i), fmt.Sprintf("%q is not a valid email address.", s.Email))
		}
	}
	return nil
}

// fileName is the name a file URL's document takes.
func fileName(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "document.pdf"
	}
	if b := path.Base(p.Path); b != "" && b != "/" && b != "." {
		return b
	}
	return "document.pdf"
}
