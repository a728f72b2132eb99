package api

import (
	"encoding/json"
	"net/http"
	"strconv"

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

// writeJSONNow writes v with a Content-Length and flushes it, so the client
// has the whole answer while the handler goes on with follow-up work.
func writeJSONNow(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_ = http.NewResponseController(w).Flush()
}

func writeErr(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, protocol.Error{Code: e.code, Message: e.msg})
}
