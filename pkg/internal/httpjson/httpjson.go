package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/imcluster/imcluster/services/protocol"
)

// APIError is a non-2xx answer of the message API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("message API answered %d: %s: %s", e.Status, e.Code, e.Message)
}

// Caller calls one API as one principal.
type Caller struct {
	HTTP    *http.Client // must not be nil
	BaseURL string       // a trailing slash is dropped
	Token   string       // sent as "Authorization: Bearer <Token>"
	MaxBody int64        // bytes of an answer read at most
	// EmptyOK: a 2xx answer without a body leaves out as it is; otherwise
	// decoding it into a non-nil out fails.
	EmptyOK bool
}

// Do calls method path; in (if not nil) is sent as JSON, hdr is set on the
// request after Authorization and Content-Type, and the answer is decoded
// into out (if not nil; a *json.RawMessage gets the raw body).
func (c Caller) Do(ctx context.Context, method, path string, hdr map[string]string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("while calling %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBody))
	if err != nil {
		return fmt.Errorf("while reading %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var pe protocol.Error
		if json.Unmarshal(b, &pe) != nil || pe.Code == "" {
			pe = protocol.Error{Code: protocol.ErrInternal, Message: strings.TrimSpace(string(b))}
		}
		return &APIError{Status: resp.StatusCode, Code: pe.Code, Message: pe.Message}
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if out == nil || (c.EmptyOK && len(b) == 0) {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("while decoding %s %s: %w", method, path, err)
	}
	return nil
}
