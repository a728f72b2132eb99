package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gocql/gocql"
)

// retryUncertain repeats only writes whose outcome is unknown, a bounded
// number of times, and stops when its context ends.
func TestRetryUncertain(t *testing.T) {
	timeout := fmt.Errorf("while writing: %w", &gocql.RequestErrWriteTimeout{WriteType: "SIMPLE"})
	refused := &gocql.RequestErrWriteFailure{}
	cases := []struct {
		name      string
		errs      []error // op's answers in turn; nil once they run out
		wantCalls int
		wantErr   error
	}{
		{"success at once", nil, 1, nil},
		{"unknown outcome, then success", []error{timeout, timeout}, 3, nil},
		{"unknown outcome every time", []error{timeout, timeout, timeout, timeout}, uncertainAttempts, timeout},
		{"a definite failure is not repeated", []error{refused}, 1, refused},
		{"unknown, then a definite failure", []error{timeout, refused}, 2, refused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := retryUncertain(context.Background(), func() error {
				calls++
				if calls <= len(c.errs) {
					return c.errs[calls-1]
				}
				return nil
			})
			if calls != c.wantCalls || !errors.Is(err, c.wantErr) {
				t.Fatalf("calls=%d err=%v, want calls=%d err=%v", calls, err, c.wantCalls, c.wantErr)
			}
		})
	}

	t.Run("an ended context stops the attempts", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := retryUncertain(ctx, func() error {
			calls++
			cancel()
			return timeout
		})
		if calls != 1 || !errors.Is(err, timeout) {
			t.Fatalf("calls=%d err=%v, want one call and its error", calls, err)
		}
	})
}
