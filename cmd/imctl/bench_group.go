package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/pkg/sdk"
)

// benchPlan says who sends the k-th bench message to whom: 1:1 (user i to
// user i+1) or, with --group-size, a member of one of the bench's groups
// to its group (every other member receives it).
type benchPlan struct {
	users     []string
	groupSize int
	names     []string // group ids
}

// newBenchPlan creates the groups of group mode (the first member of each
// owns it), users/size groups of size members each.
func newBenchPlan(ctx context.Context, o benchOpts, users, tokens []string) (*benchPlan, error) {
	p := &benchPlan{users: users, groupSize: o.groupSize}
	if o.groupSize == 0 {
		return p, nil
	}
	if o.groupSize < 2 || o.groupSize > len(users) {
		return nil, fmt.Errorf("--group-size must be in [2, --users]")
	}
	n := len(users) / o.groupSize
	p.names = make([]string, n)
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	t0 := time.Now()
	for i := range n {
		p.names[i] = fmt.Sprintf("%s-g%d", o.runID, i)
		members := users[i*o.groupSize : (i+1)*o.groupSize]
		eg.Go(func() error {
			c := &sdk.Client{BaseURL: g.api, Token: tokens[i*o.groupSize], HTTP: apiHTTP()}
			r, err := c.CreateGroup(gctx, members[0], sdk.NewGroup{GroupID: p.names[i], Name: p.names[i], Members: members[1:]})
			if err == nil && r.Pending {
				err = fmt.Errorf("group %s: still pending after the API's wait", p.names[i])
			}
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, fmt.Errorf("while creating the bench groups: %w", err)
	}
	fmt.Fprintf(os.Stderr, "created %d groups of %d members in %.1fs\n", n, o.groupSize, time.Since(t0).Seconds())
	return p, nil
}

func (p *benchPlan) groups() int { return len(p.names) }

// pick returns the k-th message's sender, recipient (-1 in group mode)
// and group ("" for 1:1): groups in turn, each group's members in turn.
func (p *benchPlan) pick(k int) (from, to int, group string) {
	if p.groupSize == 0 {
		return k % len(p.users), (k + 1) % len(p.users), ""
	}
	gi := k % len(p.names)
	member := (k / len(p.names)) % p.groupSize
	return gi*p.groupSize + member, -1, p.names[gi]
}

// receivers is how many deliveries a message of from is expected to get:
// the recipient, or every other connected member of from's group.
func (p *benchPlan) receivers(from int, clients []*client.Client) int32 {
	if p.groupSize == 0 {
		return 1
	}
	first := from / p.groupSize * p.groupSize
	var n int32
	for i := first; i < first+p.groupSize; i++ {
		if i != from && clients[i] != nil {
			n++
		}
	}
	return n
}

// allDelivered reports whether every acked message reached all its
// receivers.
func (p *benchPlan) allDelivered(mu *sync.Mutex, sent map[string]*sentMsg) bool {
	mu.Lock()
	defer mu.Unlock()
	for _, m := range sent {
		if m.ok && m.deliveries < m.expect {
			return false
		}
	}
	return true
}
