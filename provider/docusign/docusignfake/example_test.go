package docusignfake_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
)

// A simulator speaking DocuSign, for a test: a key pair for the JWT
// grant, the dialect verifying with its public half, the simulator on a
// free port. A DocuSign client then takes AuthURL and the base URL from
// s.URL(), and the private key.
func Example() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	d, err := docusignfake.New(docusignfake.Config{PublicKey: &key.PublicKey})
	if err != nil {
		panic(err)
	}
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Dialect: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()

	now := time.Now()
	assertion, err := docusignfake.SignAssertion(key, docusignfake.Claims{
		Issuer: docusignfake.DefaultIntegrationKey, Subject: docusignfake.DefaultUserID,
		Audience: strings.TrimPrefix(s.URL(), "http://"), // host:port, as account-d.docusign.com
		IssuedAt: now, Expires: now.Add(time.Hour), Scope: "signature impersonation",
	})
	if err != nil {
		panic(err)
	}
	resp, err := http.PostForm(s.URL()+"/oauth/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	if err != nil {
		panic(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, tok.TokenType, tok.ExpiresIn)

	req, _ := http.NewRequest("GET", s.URL()+"/restapi/v2.1/accounts/"+d.AccountID()+"/envelopes?transaction_ids=order-1042", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var list struct {
		TotalSetSize string `json:"totalSetSize"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, list.TotalSetSize, resp.Header.Get("X-RateLimit-Remaining"))
	// Output:
	// 200 Bearer 3600
	// 200 0 2999
}
