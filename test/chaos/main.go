package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	root, bin, out string
	only           string
	users          int
	rate           float64
	offline        float64
	before, after  time.Duration
	heal           time.Duration
	sabotage       int64
	groups         int
	groupSize      int
	groupShare     float64
}

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "the repository (for hack/deps.sh)")
	flag.StringVar(&o.bin, "bin", "", "the cmd/imcluster binary to run")
	flag.StringVar(&o.out, "out", ".run/chaos", "logs and results")
	flag.StringVar(&o.only, "scenarios", "all", "comma-separated scenario names, or all: "+names())
	flag.IntVar(&o.users, "users", 500, "users per scenario (two devices each)")
	flag.Float64Var(&o.rate, "rate", 200, "messages per second")
	flag.Float64Var(&o.offline, "offline", 0.1, "share of the users offline until the check")
	flag.DurationVar(&o.before, "before", 10*time.Second, "load before the fault")
	flag.DurationVar(&o.after, "after", 10*time.Second, "load after every tier is ready again")
	flag.DurationVar(&o.heal, "heal", 20*time.Second, "devices catch up on their own before the final sync until what they lack has not fallen for this long (at most 4 min)")
	flag.Int64Var(&o.sabotage, "sabotage", 0, "self-test: the devices drop every Nth pushed message, which every scenario must then report as lost (0: off)")
	flag.IntVar(&o.groups, "groups", 10, "group chats per scenario, created at setup by an online member with the others (0: 1:1 traffic only)")
	flag.IntVar(&o.groupSize, "group-size", 20, "members per group (drawn from the users; some offline until the check)")
	flag.Float64Var(&o.groupShare, "group-share", 0.2, "share of the sends that go to a random group, by a random online member")
	flag.Parse()
	if o.groupShare < 0 || o.groupShare > 1 || o.groups < 0 || o.groups > 0 && o.groupSize < 2 {
		fmt.Fprintln(os.Stderr, "chaos: -group-share must be in [0, 1], -groups >= 0, -group-size >= 2")
		os.Exit(2)
	}
	if o.bin == "" {
		fmt.Fprintln(os.Stderr, "chaos: -bin is required (run make chaos)")
		os.Exit(2)
	}
	os.Exit(run(o))
}

func names() string {
	var n []string
	for _, s := range scenarios() {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s [chaos] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(o options) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Sockets: a thousand devices, the sends in flight, both ends of every
	// balancer connection.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var sel []scenario
	for _, s := range scenarios() {
		if o.only == "all" || strings.Contains(","+o.only+",", ","+s.name+",") {
			sel = append(sel, s)
		}
	}
	if len(sel) == 0 {
		logf("no scenario matches %q (have %s)", o.only, names())
		return 2
	}
	c, err := newCluster(o.root, o.bin, o.out)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer c.lb.close()
	defer c.contDeps()
	defer c.stopAll()
	// Interrupted: clean up at once (the tier processes; hack/chaos.sh
	// stops the dependencies) instead of waiting for the scenario.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("%v: stopping the tier processes and resuming any stopped dependency", s)
		cancel()
		c.stopAll()
		c.contDeps()
		os.Exit(130)
	}()
	if err := c.bootstrap(ctx); err != nil {
		logf("%v", err)
		return 1
	}
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	mon := &monitor{}
	go mon.run(mctx, c)
	suiteStart := time.Now()
	var results []*result
	for i, s := range sel {
		if ctx.Err() != nil {
			break
		}
		logf("=== %d/%d %s: %s", i+1, len(sel), s.name, s.desc)
		r := runScenario(ctx, o, c, mon, s, fmt.Sprintf("c%s%d", time.Now().UTC().Format("150405"), i))
		results = append(results, r)
		logf("=== %s: %s (%s)", s.name, status(r), r.duration.Round(time.Second))
		logf("    1:1:    %s", tallyLine(r.Direct))
		logf("    groups: %s", tallyLine(r.Group))
		for _, f := range r.failures {
			logf("    FAIL: %s", f)
		}
		for _, e := range r.Examples {
			logf("    e.g. %s", e)
		}
	}
	table := render(results, o, time.Since(suiteStart))
	fmt.Println(table)
	_ = os.WriteFile(filepath.Join(o.out, "results.md"), []byte(table), 0o644)
	for _, r := range results {
		if len(r.failures) > 0 {
			return 1
		}
	}
	if len(results) < len(sel) {
		return 1
	}
	return 0
}

func status(r *result) string {
	if len(r.failures) > 0 {
		return "FAIL"
	}
	return "pass"
}

// runScenario: a healthy stack, fresh users with two devices each (some
// offline), steady load, the fault, recovery, more load, then the checks.
func runScenario(ctx context.Context, o options, c *cluster, mon *monitor, s scenario, runID string) *result {
	r := &result{name: s.name, desc: s.desc, refusedWhy: map[string]int{}, readyAfter: -1}
	t0 := time.Now()
	defer func() { r.duration = time.Since(t0) }()

	// A healthy stack first: every dependency up (no-op when running),
	// every tier process running and ready.
	for _, d := range []string{"kafka", "cassandra", "etcd"} {
		if err := c.restartDep(ctx, d); err != nil {
			r.fail("setup: %v", err)
			return r
		}
	}
	for _, n := range c.order {
		if err := c.start(n); err != nil {
			r.fail("setup: %v", err)
			return r
		}
	}
	if err := c.awaitReady(ctx, 120*time.Second); err != nil {
		r.fail("setup: %v", err)
		return r
	}
	push := []string{"ws://" + c.procs["push-1"].httpAddr + "/", "ws://" + c.procs["push-2"].httpAddr + "/"}
	l, err := newLoad(runID, c.lb.addr, push, o.users, o.offline, c.userKey)
	if err != nil {
		r.fail("setup: %v", err)
		return r
	}
	l.sabotage = o.sabotage
	defer l.closeAll()
	var online, offline []int
	for u, on := range l.online {
		if on {
			online = append(online, u)
		} else {
			offline = append(offline, u)
		}
	}
	if err := l.connect(ctx, online); err != nil {
		r.fail("setup: %v", err)
		return r
	}
	logf("%d devices of %d users connected; %d users offline until the check", 2*len(online), len(online), len(offline))
	time.Sleep(2 * time.Second) // the message tier's presence caches see every session
	if o.groups > 0 && o.groupShare > 0 {
		l.groupShare = o.groupShare
		if err := l.createGroups(ctx, o.groups, o.groupSize, 60*time.Second); err != nil {
			r.fail("setup: %v", err)
			return r
		}
		nOff := 0
		for _, g := range l.groups {
			nOff += len(g.members) - len(g.senders)
		}
		logf("%d groups of %d members created (%d memberships offline until the check); %.0f%% of the sends go to groups",
			len(l.groups), len(l.groups[0].members), nOff, 100*o.groupShare)
	}

	stop := make(chan struct{})
	var giveUp atomic.Int64
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(o.rate, stop, &giveUp) }()
	loadStart := time.Now()
	time.Sleep(o.before)

	logf("fault: %s", s.desc)
	back, err := s.inject(ctx, c, r)
	if err != nil {
		r.fail("fault: %v", err)
	}
	if back.IsZero() {
		back = time.Now()
	}
	r.backAt = back
	logf("back %.1f s after the fault; waiting for every tier to be ready", back.Sub(r.faultAt).Seconds())
	if err := c.awaitReady(ctx, 90*time.Second); err != nil {
		r.fail("tiers: %v", err)
	}
	time.Sleep(o.after)
	close(stop)
	<-loadDone
	loadEnd := time.Now()
	giveUp.Store(time.Now().Add(30 * time.Second).UnixNano())
	waitGroup(&l.wg, 60*time.Second)
	logf("load done: %d messages in %.0f s; connecting the %d offline users", len(l.msgs), loadEnd.Sub(loadStart).Seconds(), len(offline))

	// Recovery figures.
	r.sendGap, r.sendOK = l.tl.gap(&l.tl.acks, r.faultAt, loadEnd)
	r.delivGap, r.delivOK = l.tl.gap(&l.tl.pushes, r.faultAt, loadEnd)
	r.readyAfter, r.notReadySeen = mon.readySince(r.faultAt, back)
	if s.dep != "" && (r.readyAfter < 0 || r.readyAfter > 10*time.Second) {
		r.fail("a tier was not ready 10 s after %s was back (%s)", s.dep, fmtDur(r.readyAfter))
	}
	l.mu.Lock()
	for _, f := range l.refused {
		r.refused++
		r.refusedWhy[f.err]++
		if !f.at.Before(r.faultAt) && f.at.Before(back.Add(10*time.Second)) {
			r.refusedOutage++
		}
	}
	r.sent = int64(len(l.msgs))
	l.mu.Unlock()
	r.skipped, r.dupSent = l.skipped.Load(), l.dupSent.Load()
	if n := c.lb.acceptErrs.Load(); n > 0 {
		r.note(fmt.Sprintf("the balancer's accept failed %d times (see the log)", n))
	}
	if s.dep == "cassandra" && r.refusedOutage > 0 {
		r.fail("%d send attempts refused during the Cassandra outage (sends touch only Kafka): %v", r.refusedOutage, r.refusedWhy)
	}

	// Offline users come online; every device catches up on its own
	// (push, the syncs after login and on hints), then syncs once more.
	if len(offline) > 0 {
		if err := l.connect(ctx, offline); err != nil {
			r.fail("check: %v", err)
		}
	}
	r.Unhealed = l.awaitHealed(o.heal, 4*time.Minute)
	l.verify(ctx, &r.verdict)
	if r.LateInViews > 0 {
		r.note(fmt.Sprintf("%d acked messages reached an API view (sync, unread pull, history) only after its first read, the last %.1f s after it",
			r.LateInViews, r.LateBy.Seconds()))
	}
	for _, k := range []struct {
		what string
		t    tally
	}{{"", r.Direct}, {"group ", r.Group}} {
		if k.t.Lost > 0 {
			r.fail("%d acknowledged %smessages lost", k.t.Lost, k.what)
		}
		if k.t.StoredTwice > 0 {
			r.fail("%d %smessages stored twice", k.t.StoredTwice, k.what)
		}
		if k.t.Reordered > 0 {
			r.fail("%d %smessages reordered (seq mismatch %d, causal %d, sync order %d, push order %d, history order %d)",
				k.t.Reordered, k.what, k.t.SeqMismatch, k.t.Causal, k.t.SyncOrder, k.t.PushOrder, k.t.HistoryOrder)
		}
	}
	if r.IDErrors > 0 || r.Rejected > 0 {
		r.fail("idempotency: %d retries answered another msg_id or 409, %d rejected events", r.IDErrors, r.Rejected)
	}
	if r.Echoed > 0 {
		r.fail("%d messages pushed back to the device that sent them", r.Echoed)
	}
	if r.GroupReceipts > 0 {
		r.fail("%d delivered receipts in group conversations (groups have none)", r.GroupReceipts)
	}
	if o.groups > 0 && o.groupShare > 0 && r.Group.Acked == 0 {
		r.fail("no group message acknowledged")
	}
	if len(r.CheckErrors) > 0 {
		r.fail("check incomplete (%d problems): %s", len(r.CheckErrors), r.CheckErrors[0])
	}
	if r.Direct.Acked+r.Group.Acked == 0 {
		r.fail("nothing acknowledged")
	}
	// And it stays ready: no tier not ready from 10 s after the part was
	// back until the checks are done.
	if bad, first := mon.notReadyBetween(back.Add(10*time.Second), time.Now()); len(bad) > 0 {
		msg := fmt.Sprintf("not ready again %.1f s after the part was back (samples per tier: %v)", first.Sub(back).Seconds(), bad)
		if s.dep != "" {
			r.fail("%s", msg)
		} else {
			r.note(msg)
		}
	}
	return r
}

func waitGroup(wg interface{ Wait() }, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func render(rs []*result, o options, total time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "chaos suite, %s UTC, %d cores (%s), %d users × 2 devices (%.0f%% offline until the check), %.0f msg/s, %s, total %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), host, o.users, 100*o.offline, o.rate, groupsStr(o), total.Round(time.Second))
	b.WriteString("| scenario | result | acked 1:1 / group | lost | stored twice | reordered | unacked (stored) | refused attempts (in outage) | redelivered pushes | unhealed before final sync | sends ok again | deliveries resume | tiers ready after back | took |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %d / %d | %d / %d | %d / %d | %d / %d | %d (%d) | %d (%d) | %d | %d | %s | %s | %s | %s |\n",
			r.name, status(r), r.Direct.Acked, r.Group.Acked, r.Direct.Lost, r.Group.Lost, r.Direct.StoredTwice, r.Group.StoredTwice,
			r.Direct.Reordered, r.Group.Reordered, r.Unacked, r.UnackedStored, r.refused, r.refusedOutage,
			r.RedeliveredPushes, r.Unhealed, gapStr(r.sendGap, r.sendOK), gapStr(r.delivGap, r.delivOK), fmtDur(r.readyAfter), r.duration.Round(time.Second))
	}
	b.WriteString("\nacked, lost, stored twice, reordered: 1:1 messages / group messages (a group message counts once, however many members). sends ok again / deliveries resume: the longest stretch after the fault without any acknowledged send / pushed event, and when it ended (from the fault); — none over 0.5 s. tiers ready after back: from the moment the faulty part was back (dependency ready by its own protocol, process restarted, SIGCONT) until every tier's /readyz answered 200.\n")
	for _, r := range rs {
		var why []string
		for k, v := range r.refusedWhy {
			why = append(why, fmt.Sprintf("%s ×%d", k, v))
		}
		sort.Strings(why)
		fmt.Fprintf(&b, "\n- %s: %s; back %.1f s after the fault; %d messages (%d attempts skipped at %d in flight), %d resent after their ack",
			r.name, r.desc, r.backAt.Sub(r.faultAt).Seconds(), r.sent, r.skipped, maxInflight, r.dupSent)
		if len(why) > 0 {
			fmt.Fprintf(&b, "; refused: %s", strings.Join(why, ", "))
		}
		for _, n := range r.notes {
			fmt.Fprintf(&b, "; %s", n)
		}
		for _, f := range r.failures {
			fmt.Fprintf(&b, "\n  - FAIL: %s", f)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func gapStr(gap, end time.Duration) string {
	if gap == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f s gap, +%.1f s", gap.Seconds(), end.Seconds())
}

func tallyLine(t tally) string {
	return fmt.Sprintf("%d acked, %d lost, %d stored twice, %d reordered (seq mismatch %d, causal %d, sync order %d, push order %d, history order %d)",
		t.Acked, t.Lost, t.StoredTwice, t.Reordered, t.SeqMismatch, t.Causal, t.SyncOrder, t.PushOrder, t.HistoryOrder)
}

func groupsStr(o options) string {
	if o.groups == 0 || o.groupShare == 0 {
		return "1:1 only"
	}
	return fmt.Sprintf("%.0f%% of the sends to %d groups of %d", 100*o.groupShare, o.groups, o.groupSize)
}
