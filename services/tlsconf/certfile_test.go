package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/tlsconf"
	"github.com/imcluster/imcluster/services/tlsconf/tlstest"
)

func TestLoadCertFileRefusesBadPairs(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	c1, k1, _ := ca.Issue(t)
	_, k2, _ := ca.Issue(t)
	tests := []struct {
		name       string
		cert, key  []byte
		missingKey bool
	}{
		{"mismatched key", c1, k2, false},
		{"garbage certificate", []byte("not pem"), k1, false},
		{"empty key", c1, nil, false},
		{"missing key", c1, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cp, kp := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			_ = os.WriteFile(cp, tc.cert, 0o600)
			if !tc.missingKey {
				_ = os.WriteFile(kp, tc.key, 0o600)
			}
			if _, err := tlsconf.LoadCertFile(cp, kp); err == nil {
				t.Fatal("bad pair loaded")
			}
		})
	}
	if _, err := tlsconf.LoadCertFile("", ""); err == nil {
		t.Fatal("no files: loaded")
	}
}

// A server on ServerConfig is reached by a client trusting the CA, refused
// by one that does not, follows a rewrite of the Secret volume and keeps
// its pair through a bad rewrite.
func TestServerConfigFollowsFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	sec := tlstest.NewSecretDir(t)
	c1, k1, s1 := ca.Issue(t)
	sec.Pair(t, ca, c1, k1)
	cf, err := tlsconf.LoadCertFile(sec.Cert(), sec.Key())
	if err != nil {
		t.Fatal(err)
	}
	// Not httptest.StartTLS: it would add its own certificate.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconf.ServerConfig(cf))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	addr := ln.Addr().String()
	url := "https://" + addr

	good, err := tlsconf.ClientConfig(sec.CA())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: good}}).Get(url)
	if err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	resp.Body.Close()
	if _, err := (&http.Client{Transport: &http.Transport{}}).Get(url); !isUnknownAuthority(err) {
		t.Fatalf("client without the CA: err=%v, want unknown authority", err)
	}
	tlstest.AwaitSerial(t, addr, good, s1, 5*time.Second)

	// Rotation: a new pair through the symlink swap, picked up by Watch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cf.Watch(ctx, 20*time.Millisecond, nil)
	c2, k2, s2 := ca.Issue(t)
	sec.Pair(t, ca, c2, k2)
	tlstest.AwaitSerial(t, addr, good, s2, 5*time.Second)

	// A bad rewrite (key of another pair) is refused; the pair stays.
	_, k3, _ := ca.Issue(t)
	sec.Pair(t, ca, c2, k3)
	deadline := time.Now().Add(5 * time.Second)
	for cf.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("bad rewrite never noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := tlstest.PeerSerial(addr, good); err != nil || got.Cmp(s2) != 0 {
		t.Fatalf("after a bad rewrite: serial %v err %v, want %v still", got, err, s2)
	}
	if changed, err := cf.Reload(); changed || err == nil {
		t.Fatalf("Reload of the bad pair: changed=%v err=%v", changed, err)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("no certificate here"), 0o600)
	if _, err := tlsconf.ClientConfig(bad); err == nil {
		t.Fatal("CA file without certificates accepted")
	}
	if _, err := tlsconf.ClientConfig(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing CA file accepted")
	}
	cfg, err := tlsconf.ClientConfig("")
	if err != nil || cfg.InsecureSkipVerify || cfg.MinVersion < tls.VersionTLS12 {
		t.Fatalf("default client config %+v, %v", cfg, err)
	}
}

func isUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}
