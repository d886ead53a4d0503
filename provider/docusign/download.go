package docusign

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
)

// maxDownload bounds one downloaded artefact.
const maxDownload = 256 << 20

// Download returns one artefact of an envelope: ArtifactSigned is
// documents/combined (every document in one PDF), ArtifactCertificate is
// documents/certificate (the certificate of completion), ArtifactAudit is
// audit_events converted to a JSON document (see AuditTrail). DocuSign
// declares no digest, so DeclaredHash is always "": the caller records the
// SHA-256 it computes.
func (c *Client) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	base := "/envelopes/" + url.PathEscape(id)
	var path string
	switch kind {
	case provider.ArtifactSigned:
		path = base + "/documents/combined"
	case provider.ArtifactCertificate:
		path = base + "/documents/certificate"
	case provider.ArtifactAudit:
		return c.audit(ctx, id)
	default:
		return provider.Download{}, &provider.PermanentError{Reason: fmt.Sprintf("docusign: unknown artefact %q", kind)}
	}
	a, err := c.api.Fetch(ctx, func(ctx context.Context) (apicall.Answer, error) {
		return c.call(ctx, request{method: http.MethodGet, path: path, envs: []string{id}, op: "download_" + string(kind)}, maxDownload)
	})
	if err != nil {
		return provider.Download{}, fmt.Errorf("docusign: download %s of %s: %w", kind, id, err)
	}
	return a.Download("application/pdf"), nil
}

// AuditTrail is the JSON document Download(ArtifactAudit) returns: each of
// DocuSign's audit events (a list of eventFields name/value pairs) becomes
// one object whose keys are the field names, in DocuSign's order of
// events. Encoded with encoding/json, the keys of each event are sorted,
// so the same trail always gives the same bytes and the same SHA-256.
type AuditTrail struct {
	Provider   string              `json:"provider"`
	EnvelopeID string              `json:"envelope_id"`
	Events     []map[string]string `json:"events"`
}

func (c *Client) audit(ctx context.Context, id string) (provider.Download, error) {
	var raw struct {
		AuditEvents []struct {
			EventFields []struct {
				Name  string  `json:"name"`
				Value *string `json:"value"`
			} `json:"eventFields"`
		} `json:"auditEvents"`
	}
	err := c.do(ctx, request{method: http.MethodGet, path: "/envelopes/" + url.PathEscape(id) + "/audit_events",
		envs: []string{id}, op: "download_audit"}, &raw)
	if err != nil {
		return provider.Download{}, fmt.Errorf("docusign: download audit of %s: %w", id, err)
	}
	trail := AuditTrail{Provider: "docusign", EnvelopeID: id, Events: make([]map[string]string, 0, len(raw.AuditEvents))}
	for _, ev := range raw.AuditEvents {
		m := make(map[string]string, len(ev.EventFields))
		for _, f := range ev.EventFields {
			if f.Value != nil {
				m[f.Name] = *f.Value
			} else if _, ok := m[f.Name]; !ok {
				m[f.Name] = ""
			}
		}
		trail.Events = append(trail.Events, m)
	}
	b, err := json.Marshal(trail)
	if err != nil {
		return provider.Download{}, err
	}
	return provider.Download{Body: b, ContentType: "application/json"}, nil
}
