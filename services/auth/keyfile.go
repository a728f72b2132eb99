package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/services/internal/filewatch"
)

// DefaultReloadInterval is how often Watch re-reads a key file by default.
const DefaultReloadInterval = filewatch.DefaultInterval

// KeyFile is a KeySource that follows a key file (format: ParseKeySet).
// Reload re-reads it and swaps the set atomically when the content
// changed; Watch calls Reload every few seconds. A file that turns
// unreadable or invalid keeps the last good set (and Reload says why), so a
// botched Secret edit never locks every client out.
//
// Content, not mtime or inode, is compared: Kubernetes updates a Secret
// volume by swapping the ..data symlink, and some editors rewrite in place.
type KeyFile struct {
	path string
	keys atomic.Pointer[KeySet]

	mu      sync.Mutex // serialises Reload
	content []byte     // last content read successfully and parsed
	lastErr error      // error of the last Reload, nil when it succeeded
}

// LoadKeyFile reads and parses the key file at path. Unlike Reload it
// fails when the file is missing or invalid: a process must not start
// without keys.
func LoadKeyFile(path string) (*KeyFile, error) {
	f := &KeyFile{path: path}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (f *KeyFile) Path() string { return f.path }

// Keys returns the current key set.
func (f *KeyFile) Keys() *KeySet { return f.keys.Load() }

// Err returns the error of the last Reload (nil if it succeeded): the
// file is currently unreadable or invalid and the last good set is in use.
func (f *KeyFile) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Reload re-reads the file now. It reports whether the key set changed.
// On error the current set stays in use.
func (f *KeyFile) Reload() (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := readBounded(f.path)
	if err == nil && f.keys.Load() != nil && bytes.Equal(b, f.content) {
		f.lastErr = nil
		return false, nil
	}
	var ks *KeySet
	if err == nil {
		if ks, err = ParseKeySet(b); err != nil {
			err = fmt.Errorf("while parsing key file %s: %w", f.path, err)
		}
	}
	f.lastErr = err
	if err != nil {
		return false, err
	}
	f.content = b
	if old := f.keys.Load(); old.Equal(ks) { // e.g. only a comment changed
		return false, nil
	}
	f.keys.Store(ks)
	return true, nil
}

// Watch calls Reload every interval (DefaultReloadInterval if ≤ 0) until
// ctx ends, logging each change (kids only, never secrets) and each failure.
// Failures are logged when they start and when they end, not every poll.
func (f *KeyFile) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	filewatch.Poll(ctx, interval, f.Reload, filewatch.Events{
		File: f.path,
		Failed: func(err error) {
			log.Error("key file unreadable or invalid; keeping the last good keys", "file", f.path,
				"kids", f.Keys().IDs(), "err", err)
		},
		Recovered: func() { log.Info("key file valid again", "file", f.path) },
		Changed:   func() { log.Info("key file reloaded", "file", f.path, "kids", f.Keys().IDs()) },
	})
}

// readBounded reads path, refusing files over MaxKeyFileBytes.
func readBounded(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no key file configured", ErrKeySet)
	}
	b, err := filewatch.Read(path, MaxKeyFileBytes)
	switch {
	case errors.Is(err, filewatch.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	case err != nil:
		return nil, fmt.Errorf("while reading key file: %w", err)
	}
	return b, nil
}
