package filewatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// DefaultInterval is how often Poll re-reads by default. A Kubernetes
// Secret update reaches the volume within the kubelet's sync period (about
// a minute), so a few seconds more are noise.
const DefaultInterval = 5 * time.Second

// Events are the transitions Poll reports; nil fields are skipped. They run
// on Poll's goroutine, one at a time.
type Events struct {
	// File names the file in the metrics (imcluster_file_reloads_total,
	// imcluster_file_reload_failing); empty: not counted.
	File      string
	Failed    func(err error) // reload started failing (once per failing spell)
	Recovered func()          // reload succeeds again after failing
	Changed   func()          // reload applied new content
}

// Poll calls reload every interval (DefaultInterval if ≤ 0) until ctx
// ends. reload reports whether it applied new content; on error the caller
// must keep serving what it had (Poll only reports).
func Poll(ctx context.Context, interval time.Duration, reload func() (changed bool, err error), ev Events) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := reload()
		observe(ev.File, changed, err)
		switch {
		case err != nil && !failing && ev.Failed != nil:
			ev.Failed(err)
		case err == nil && failing && ev.Recovered != nil:
			ev.Recovered()
		}
		failing = err != nil
		if changed && ev.Changed != nil {
			ev.Changed()
		}
	}
}

// ErrTooLarge is returned by Read for a file over its bound.
var ErrTooLarge = errors.New("file over its size limit")

// Read reads path, refusing files over max bytes (without reading more
// than max+1 of them).
func Read(path string, max int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, path, max)
	}
	return b, nil
}
