package docusignfake

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error codes of DocuSign's limits (PROVIDER-APIS.md 1.8, 1.11).
const (
	codeHourly      = "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"
	codeBurst       = "BURST_APIINVOCATION_LIMIT_EXCEEDED"
	codePollHourly  = "Hourly_Envelope_Polling_Limit_Exceeded"
	codePollBurst   = "Burst_Envelope_Polling_Limit_Exceeded"
	burstPollWindow = 30 * time.Second
)

// admit counts one REST call against the hourly and burst windows, sets
// the rate-limit headers and, past a limit, answers the limit error and
// returns false. count false sets the headers without counting (a call
// refused before it reaches the API).
func (d *Dialect) admit(w http.ResponseWriter, now time.Time, count bool) bool {
	d.mu.Lock()
	hourly := d.hourly.At(now, d.cfg.HourlyWindow)
	burst := d.burst.At(now, d.cfg.BurstWindow)
	code := ""
	if count {
		switch {
		case hourly.N >= d.cfg.HourlyLimit:
			code = codeHourly
		case burst.N >= d.cfg.BurstLimit:
			code = codeBurst
		default:
			hourly.N++
			burst.N++
		}
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(d.cfg.HourlyLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, d.cfg.HourlyLimit-hourly.N)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(hourly.Reset(d.cfg.HourlyWindow), 10))
	h.Set("X-BurstLimit-Limit", strconv.Itoa(d.cfg.BurstLimit))
	h.Set("X-BurstLimit-Remaining", strconv.Itoa(max(0, d.cfg.BurstLimit-burst.N)))
	d.mu.Unlock()
	switch code {
	case codeHourly:
		d.stats.rateLimited.Add(1)
		writeJSON(w, d.cfg.LimitStatus, errorDetails{ErrorCode: code,
			Message: fmt.Sprintf("The maximum number of hourly API invocations has been exceeded. The hourly limit is %d.", d.cfg.HourlyLimit)})
		return false
	case codeBurst:
		d.stats.rateLimited.Add(1)
		writeJSON(w, d.cfg.LimitStatus, errorDetails{ErrorCode: code,
			Message: fmt.Sprintf("The maximum number of API invocations in %s has been exceeded. The burst limit is %d.", d.cfg.BurstWindow, d.cfg.BurstLimit)})
		return false
	}
	return true
}

// pollLimited reports whether envelope id's status was read less than
// PollInterval ago, and otherwise records this read. It returns the
// error to answer, nil when the read may go ahead.
func (d *Dialect) pollLimited(id string, now time.Time) *errorDetails {
	if d.cfg.PollInterval <= 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if last, ok := d.polls[id]; ok && now.Sub(last) < d.cfg.PollInterval {
		d.stats.pollLimited.Add(1)
		code := codePollBurst
		if d.cfg.PollInterval > burstPollWindow {
			code = codePollHourly
		}
		return &errorDetails{ErrorCode: code, Message: fmt.Sprintf(
			"The maximum number of status requests for envelope %s has been exceeded: read it at most once every %s.", id, d.cfg.PollInterval)}
	}
	d.polls[id] = now
	return nil
}
