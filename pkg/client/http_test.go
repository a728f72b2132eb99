package client

import (
	"crypto/tls"
	"net/http"
	"testing"
)

// Clients without their own HTTP client and with the default TLS settings
// share one (and so one connection pool); a Client with a TLS config gets
// a client and transport of its own that use it, and the shared one is
// left as it was; a caller's HTTP client is used as given.
func TestNewSharesTheHTTPClientUnlessTLS(t *testing.T) {
	a, b := New(Config{DeviceID: "a"}), New(Config{DeviceID: "b"})
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	if a.http != defaultHTTP || b.http != defaultHTTP {
		t.Fatalf("default Clients use %p and %p, want the shared %p", a.http, b.http, defaultHTTP)
	}

	tc := &tls.Config{ServerName: "message.example", MinVersion: tls.VersionTLS13}
	sec := New(Config{DeviceID: "s", TLS: tc})
	t.Cleanup(sec.Close)
	if sec.http == defaultHTTP {
		t.Fatal("a Client with a TLS config uses the shared HTTP client")
	}
	tr, ok := sec.http.Transport.(*http.Transport)
	if !ok || tr == http.DefaultTransport {
		t.Fatalf("TLS Client's transport %T %p: want a transport of its own", sec.http.Transport, sec.http.Transport)
	}
	if tr.TLSClientConfig != tc {
		t.Errorf("TLS Client's transport has TLS config %p, want the Config's %p", tr.TLSClientConfig, tc)
	}
	if sec.http.Timeout != DefaultAPITimeout {
		t.Errorf("TLS Client's timeout %v, want %v", sec.http.Timeout, DefaultAPITimeout)
	}
	if defaultHTTP.Transport != nil || defaultHTTP.Timeout != DefaultAPITimeout {
		t.Errorf("the shared client changed: transport %v, timeout %v", defaultHTTP.Transport, defaultHTTP.Timeout)
	}
	if again := New(Config{DeviceID: "c"}); again.http != defaultHTTP {
		t.Error("a default Client after a TLS one does not use the shared client")
	} else {
		again.Close()
	}

	own := &http.Client{}
	for _, cfg := range []Config{{HTTPClient: own}, {HTTPClient: own, TLS: tc}} {
		c := New(cfg)
		c.Close()
		if c.http != own {
			t.Errorf("TLS %v: the caller's HTTP client is not used", cfg.TLS != nil)
		}
	}
}
