package filewatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPollReportsTransitionsOnce(t *testing.T) {
	// Each reload returns the next scripted outcome; the events must follow
	// the transitions, not every poll.
	script := []struct {
		changed bool
		err     error
	}{
		{false, nil}, {true, nil}, {false, errors.New("a")}, {false, errors.New("b")},
		{false, nil}, {true, nil}, {false, nil},
	}
	var mu sync.Mutex
	var got []string
	i := 0
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if i == len(script) {
			select {
			case <-done:
			default:
				close(done)
			}
			return false, nil
		}
		s := script[i]
		i++
		return s.changed, s.err
	}
	file := fmt.Sprintf("test-%d", time.Now().UnixNano()) // counters outlive a run (-count)
	record := func(s string) { mu.Lock(); got = append(got, s); mu.Unlock() }
	go Poll(ctx, time.Millisecond, reload, Events{
		File:      file,
		Failed:    func(err error) { record("failed:" + err.Error()) },
		Recovered: func() { record("recovered") },
		Changed:   func() { record("changed") },
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Poll did not run the script")
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"changed", "failed:a", "recovered", "changed"}
	for result, n := range map[string]float64{"changed": 2, "failed": 2} {
		if got := testutil.ToFloat64(mReloads.WithLabelValues(file, result)); got != n {
			t.Errorf("reloads_total{result=%q} = %v, want %v", result, got, n)
		}
	}
	if got := testutil.ToFloat64(mFailing.WithLabelValues(file)); got != 0 {
		t.Errorf("reload_failing = %v after recovering, want 0", got)
	}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for j := range want {
		if got[j] != want[j] {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		max     int64
		want    string
		wantErr error
	}{
		{"within the bound", small, 5, "12345", nil},
		{"over the bound", small, 4, "", ErrTooLarge},
		{"missing", filepath.Join(dir, "none"), 10, "", os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Read(tc.path, tc.max)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(b) != tc.want {
				t.Fatalf("got %q, %v; want %q", b, err, tc.want)
			}
		})
	}
}
