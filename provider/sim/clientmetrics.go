package sim

import (
	"net/http"
	"strconv"
	"strings"
)

// operation names an API call by its route, without ids, so the label's
// values are bounded.
func operation(method, path string) string {
	path, _, _ = strings.Cut(path, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/") // v1 envelopes {id} ...
	switch {
	case method == http.MethodPost && len(parts) == 2:
		return "create"
	case method == http.MethodGet && len(parts) == 2:
		return "list"
	case method == http.MethodGet && len(parts) == 3:
		return "get"
	case len(parts) == 4 && method == http.MethodPut:
		return "put_" + parts[3]
	case len(parts) == 4 && parts[3] == "send":
		return "send"
	case len(parts) == 5 && parts[3] == "documents":
		return "download"
	}
	return strings.ToLower(method) + "_" + strconv.Itoa(len(parts))
}
