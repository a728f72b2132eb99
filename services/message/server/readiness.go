package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// readyCheckInterval is how often the dependency checks run: a dependency
// that is back is seen within it (and a check's own timeout).
const readyCheckInterval = 2 * time.Second

// readiness is the message process's /readyz: named checks, each either
// gating (the answer is 503 while it fails) or reported only. The body
// lists every check, so a human sees why, and what still works:
//
//	ready
//	kafka: ok
//	pipeline: ok
//	routing: ok
//	cassandra: down (reads answer 503; sends are taken): <error>
type readiness struct {
	mu     sync.Mutex
	checks []*readyCheck
}

type readyCheck struct {
	name   string
	gating bool
	// whileDown says, for a check that does not gate, what still works
	// while it fails.
	whileDown string
	probe     func() error // run periodically (nil: flag)
	flag      func() bool  // read at request time
	last      error        // the probe's last result
	ran       bool
}

// add registers a gating probe: /readyz answers 503 while it fails.
func (r *readiness) add(name string, probe func() error) {
	r.checks = append(r.checks, &readyCheck{name: name, gating: true, probe: probe})
}

// report registers a probe that is shown but does not gate; whileDown
// tells what still works while it fails.
func (r *readiness) report(name, whileDown string, probe func() error) {
	r.checks = append(r.checks, &readyCheck{name: name, whileDown: whileDown, probe: probe})
}

func (r *readiness) addFlag(name string, gating bool, flag func() bool) {
	r.checks = append(r.checks, &readyCheck{name: name, gating: gating, flag: flag})
}

// run probes every check until ctx is done.
func (r *readiness) run(ctx context.Context) {
	t := time.NewTicker(readyCheckInterval)
	defer t.Stop()
	for {
		for _, c := range r.checks {
			if c.probe == nil {
				continue
			}
			err := c.probe()
			r.mu.Lock()
			c.last, c.ran = err, true
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *readiness) serve(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ready := true
	var lines []string
	for _, c := range r.checks {
		var state string
		switch {
		case c.flag != nil && c.flag():
			state = "ok"
		case c.flag != nil:
			state = "waiting"
		case !c.ran:
			state = "not checked yet"
		case c.last == nil:
			state = "ok"
		case c.gating:
			state = fmt.Sprintf("down: %v", c.last)
		default:
			state = fmt.Sprintf("down (%s): %v", c.whileDown, c.last)
		}
		if state != "ok" && c.gating {
			ready = false
		}
		lines = append(lines, c.name+": "+state)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	head := "ready"
	if !ready {
		head = "not ready"
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(head + "\n" + strings.Join(lines, "\n") + "\n"))
}
