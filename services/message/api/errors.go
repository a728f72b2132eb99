package api

import (
	"encoding/json"
	"net/http"

	"github.com/imcluster/imcluster/services/protocol"
)

// apiError is a failed request's answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, msg string) *apiError { return &apiError{status, code, msg} }

func badRequest(code, msg string) *apiError { return errf(http.StatusBadRequest, code, msg) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// unavailableRetryAfter is the Retry-After (seconds) of a 503 that set
// none: a dependency (Cassandra for reads, Kafka for sends) is failing, and
// the tier recovers on its own once it is back.
const unavailableRetryAfter = "2"

func writeErr(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", unavailableRetryAfter)
	}
	writeJSON(w, e.status, protocol.Error{Code: e.code, Message: e.msg})
}
