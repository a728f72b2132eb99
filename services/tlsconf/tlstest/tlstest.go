// Package tlstest makes throwaway certificate authorities and pairs for
// tests, and writes them the way the kubelet updates a Secret volume (a
// ..data symlink swapped atomically), so reload tests see what pods see.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var serials atomic.Int64

// CA is a self-signed certificate authority.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// NewCA returns a new CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// PEM is the CA certificate (what clients trust).
func (ca *CA) PEM() []byte { return ca.pem }

// Issue returns a server pair (PEM certificate, PEM key) for 127.0.0.1,
// ::1 and localhost, and its serial number.
func (ca *CA) Issue(t testing.TB) (certPEM, keyPEM []byte, serial *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial = big.NewInt(serials.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: fmt.Sprintf("server-%d", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), serial
}

// ClientConfig trusts only ca.
func (ca *CA) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// SecretDir is a directory laid out like a Kubernetes Secret volume:
// tls.crt, tls.key and ca.crt are symlinks into ..data, itself a symlink to
// a timestamped directory that Update replaces atomically.
type SecretDir struct {
	Dir string
	n   int
}

// NewSecretDir returns an empty SecretDir in a test temporary directory.
func NewSecretDir(t testing.TB) *SecretDir {
	return &SecretDir{Dir: t.TempDir()}
}

// Cert, Key and CA are the paths a pod would be configured with.
func (d *SecretDir) Cert() string { return filepath.Join(d.Dir, "tls.crt") }
func (d *SecretDir) Key() string  { return filepath.Join(d.Dir, "tls.key") }
func (d *SecretDir) CA() string   { return filepath.Join(d.Dir, "ca.crt") }

// Update writes the files (name → content) as the kubelet does: a new data
// directory, then one rename of the ..data symlink.
func (d *SecretDir) Update(t testing.TB, files map[string][]byte) {
	t.Helper()
	d.n++
	data := fmt.Sprintf("..%d", d.n)
	if err := os.Mkdir(filepath.Join(d.Dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d.Dir, data, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(d.Dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(d.Dir, "..data_tmp")
	if err := os.Symlink(data, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// Pair writes a certificate/key pair (and the CA) with Update.
func (d *SecretDir) Pair(t testing.TB, ca *CA, certPEM, keyPEM []byte) {
	t.Helper()
	d.Update(t, map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": ca.PEM()})
}

// PeerSerial completes a TLS handshake with addr under cfg and returns the
// serial number of the certificate the server presented.
func PeerSerial(addr string, cfg *tls.Config) (*big.Int, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// AwaitSerial polls PeerSerial until the server presents want, failing the
// test after timeout.
func AwaitSerial(t testing.TB, addr string, cfg *tls.Config, want *big.Int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := PeerSerial(addr, cfg)
		if err == nil && got.Cmp(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s still presents serial %v (err %v), want %v after %v", addr, got, err, want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
