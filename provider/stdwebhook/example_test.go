package stdwebhook_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// A sender signs with every active secret; a receiver holding any of them
// verifies and gets the webhook id to deduplicate on.
func ExampleVerify() {
	key, _ := stdwebhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := []byte(`{"type":"envelope.completed"}`)
	now := time.Now()
	h := http.Header{}
	stdwebhook.SetHeaders(h, []stdwebhook.Secret{key}, "msg_42", now, body)

	id, err := stdwebhook.Verify([]stdwebhook.Secret{key}, h, body, now, 0)
	fmt.Println(id, err, key)
	// Output: msg_42 <nil> [secret]
}
