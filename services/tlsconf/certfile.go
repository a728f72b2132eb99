package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/services/internal/filewatch"
)

// MaxFileBytes bounds a certificate, key or CA file.
const MaxFileBytes = 1 << 20

// CertFile is a certificate/key pair that follows its files (see doc.go).
type CertFile struct {
	certPath, keyPath string
	cert              atomic.Pointer[tls.Certificate]

	mu              sync.Mutex // serialises Reload
	certPEM, keyPEM []byte     // last content read successfully and parsed
	lastErr         error
}

// LoadCertFile reads the pair at certPath and keyPath. Unlike Reload it
// fails when they are missing or invalid: a listener must not start
// without a certificate.
func LoadCertFile(certPath, keyPath string) (*CertFile, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("tlsconf: certificate and key files are both required")
	}
	f := &CertFile{certPath: certPath, keyPath: keyPath}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Certificate returns the pair in use.
func (f *CertFile) Certificate() *tls.Certificate { return f.cert.Load() }

// GetCertificate is tls.Config.GetCertificate: the pair in use.
func (f *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cert.Load(), nil
}

// Err returns the error of the last Reload (nil if it succeeded).
func (f *CertFile) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Reload re-reads both files now and reports whether the pair changed. On
// error the pair in use stays.
func (f *CertFile) Reload() (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := ReadBounded(f.certPath)
	var k []byte
	if err == nil {
		k, err = ReadBounded(f.keyPath)
	}
	if err == nil && f.cert.Load() != nil && bytes.Equal(c, f.certPEM) && bytes.Equal(k, f.keyPEM) {
		f.lastErr = nil
		return false, nil
	}
	var pair tls.Certificate
	if err == nil {
		if pair, err = tls.X509KeyPair(c, k); err != nil {
			err = fmt.Errorf("while parsing the TLS pair %s, %s: %w", f.certPath, f.keyPath, err)
		}
	}
	if err == nil && pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			err = fmt.Errorf("while parsing the certificate %s: %w", f.certPath, err)
		}
	}
	f.lastErr = err
	if err != nil {
		return false, err
	}
	f.certPEM, f.keyPEM = c, k
	f.cert.Store(&pair)
	return true, nil
}

// Watch calls Reload every interval (filewatch.DefaultInterval if ≤ 0)
// until ctx ends, logging each change and each failure (when it starts
// and when it ends, not every poll).
func (f *CertFile) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	filewatch.Poll(ctx, interval, f.Reload, filewatch.Events{
		File: f.certPath,
		Failed: func(err error) {
			log.Error("TLS certificate unreadable or invalid; keeping the last good one", "cert", f.certPath,
				"serving", describe(f.Certificate()), "err", err)
		},
		Recovered: func() { log.Info("TLS certificate valid again", "cert", f.certPath) },
		Changed: func() {
			log.Info("TLS certificate reloaded", "cert", f.certPath, "serving", describe(f.Certificate()))
		},
	})
}

func describe(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("subject=%q serial=%s not_after=%s", c.Leaf.Subject.String(), c.Leaf.SerialNumber,
		c.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// ServerConfig is the tls.Config of a listener serving f's current pair.
func ServerConfig(f *CertFile) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.GetCertificate}
}

// ClientConfig trusts the system roots plus the PEM CA bundle at caFile
// (none when empty). It never skips verification.
func ClientConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := ReadBounded(caFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconf: no PEM certificate in CA file %s", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// ReadBounded reads path, refusing files over MaxFileBytes and empty ones.
func ReadBounded(path string) ([]byte, error) {
	b, err := filewatch.Read(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("while reading TLS file: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("tlsconf: %s is empty", path)
	}
	return b, nil
}
