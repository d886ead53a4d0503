package provider

import (
	"fmt"
	"net/url"
)

// ParseBaseURL parses the base URL of a provider's API (a flag's value):
// an absolute http(s) URL without a query or fragment. A trailing slash is
// dropped from its path, so paths are appended to it as they are.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", s)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%q has a query or fragment", s)
	}
	for len(u.Path) > 0 && u.Path[len(u.Path)-1] == '/' {
		u.Path = u.Path[:len(u.Path)-1]
	}
	u.RawPath = ""
	return u, nil
}
