// Package httpjson is the one HTTP JSON call of the Go client packages
// (pkg/client as a device, pkg/sdk as a business back end) against the
// message tier's API: a bearer token, an optional JSON body, a bounded
// answer, a non-2xx answer decoded into an *APIError (the API's
// protocol.Error body, or the raw text when it has none) and a 2xx answer
// decoded into the caller's value. It imports only the standard library and
// services/protocol, so the client packages stay free of server
// dependencies.
package httpjson
