package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runProbe is a container healthcheck for images without curl: GET a URL,
// succeed on 2xx.
func runProbe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("probe", e, "GET a URL and exit 0 on a 2xx answer (a healthcheck for containers without curl).")
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "`URL` to GET")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this `duration`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("%w: --url: %w", errUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", *url, resp.StatusCode)
	}
	return nil
}
