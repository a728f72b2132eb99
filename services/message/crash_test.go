package message_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

const childEnv = "IM_MESSAGE_TEST_CHILD"

// TestMain lets the test binary act as the message process with
// --role=pipeline when started as a child by TestCrashPipeline.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		cfg, err := config.LoadMessage(os.Getenv)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := server.Run(ctx, cfg, server.Options{Role: role}); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startChild(t *testing.T, cfg config.Message) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+server.RolePipeline)
	cfg.HTTPAddr = "127.0.0.1:0"
	for k, v := range cfg.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if os.Getenv("IM_TEST_VERBOSE") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// Invariants 1 and 4 across a crash: the pipeline runs as a real child
// process and is killed with SIGKILL in the middle of a stream of
// thousands of acked sends; another one takes over. Every acked message is
// stored exactly once, none is lost, and each conversation keeps the order
// its sender was acked in.
func TestCrashPipeline(t *testing.T) {
	t.Run("SIGKILL", func(t *testing.T) { crashPipeline(t, syscall.SIGKILL) })
	// Graceful stop: the child finishes (or hands back) its batch, commits
	// and exits 0 within the grace period; the next one resumes exactly.
	t.Run("SIGTERM", func(t *testing.T) { crashPipeline(t, syscall.SIGTERM) })
}

func crashPipeline(t *testing.T, sig syscall.Signal) {
	e := newEnv(t, 4)
	e.start(t, server.RoleAPI)
	child := startChild(t, e.cfg)

	const convs, perConv = 20, 150 // 3,000 messages
	type acked struct {
		id  string
		seq int64
	}
	results := make([][]acked, convs)
	var sent atomic.Int64
	var wg sync.WaitGroup
	// The last third of each stream is sent only once the signal is: the
	// API acks far faster than the pipeline stores, so without it the
	// whole stream could be in the log, and (SIGTERM) in the child's last
	// batches, before the child stops — a stop after the end, which proves
	// nothing.
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseRest := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(func() { releaseRest(); wg.Wait() })
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := fmt.Sprintf("s%d", c), fmt.Sprintf("r%d", c)
			for i := range perConv {
				if i == perConv*2/3 {
					<-release
				}
				r := e.send(t, from, text(to, fmt.Sprint("k", i), fmt.Sprintf("%d/%d", c, i)))
				results[c] = append(results[c], acked{r.MsgID, *r.Seq})
				sent.Add(1)
			}
		}()
	}
	// Kill the child once it has persisted part of the stream.
	persisted := func() int64 {
		heads, err := e.st.PersistedHeads(t.Context())
		if err != nil {
			return 0
		}
		var n int64
		for _, h := range heads {
			n += h
		}
		return n
	}
	msgtest.Eventually(t, 60*time.Second, "child persisted 600 records", func() bool { return persisted() >= 600 })
	if err := child.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	releaseRest()
	waited := make(chan error, 1)
	go func() { waited <- child.Wait() }()
	select {
	case err := <-waited:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("child stopped by SIGTERM exited with %v", err)
		}
	case <-time.After(e.cfg.ShutdownGrace + 10*time.Second):
		t.Fatalf("child did not exit within the grace period after %v", sig)
	}
	killedAt, sentAt := persisted(), sent.Load()
	t.Logf("stopped the pipeline child with %v after %d persisted, %d acked", sig, killedAt, sentAt)
	if killedAt >= convs*perConv {
		t.Fatal("child finished before the kill; the test proves nothing")
	}
	startChild(t, e.cfg)
	wg.Wait()
	for c := range convs {
		e.waitPersisted(t, model.ConvID(fmt.Sprintf("s%d", c), fmt.Sprintf("r%d", c)), perConv)
	}
	for c := range convs {
		conv := model.ConvID(fmt.Sprintf("s%d", c), fmt.Sprintf("r%d", c))
		h := e.history(t, fmt.Sprintf("r%d", c), conv, 100)
		if len(h) != perConv {
			t.Fatalf("%s: %d messages stored, want %d", conv, len(h), perConv)
		}
		for i, ev := range h {
			if ev.Message.MsgID != results[c][i].id || ev.Seq != results[c][i].seq {
				t.Fatalf("%s[%d]: stored %s@%d, acked %s@%d", conv, i, ev.Message.MsgID, ev.Seq, results[c][i].id, results[c][i].seq)
			}
		}
		evs, _ := e.syncAll(t, fmt.Sprintf("r%d", c), "", 100)
		var seqs []int64
		for _, ev := range evs {
			if ev.Kind == protocol.KindMessage {
				seqs = append(seqs, ev.Seq)
			}
		}
		if len(seqs) != perConv || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != perConv {
			t.Fatalf("%s: sync has %d messages", conv, len(seqs))
		}
	}
}
