package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/imcluster/imcluster/services/protocol"
)

// seenSet remembers the seqs of one conversation a device has. Seqs at or
// below floor are all known; above it, set holds the known ones. It keeps at
// most seenKeep entries, raising floor as it prunes.
type seenSet struct {
	floor int64
	set   map[int64]struct{}
}

const seenKeep = 4096

func (s *seenSet) add(seq int64) bool {
	if seq <= s.floor {
		return false
	}
	if _, ok := s.set[seq]; ok {
		return false
	}
	s.set[seq] = struct{}{}
	if len(s.set) > seenKeep {
		keys := make([]int64, 0, len(s.set))
		for k := range s.set {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, k := range keys[:len(keys)-seenKeep/2] {
			delete(s.set, k)
		}
		s.floor = keys[len(keys)-seenKeep/2-1]
	}
	return true
}

// deliver hands ev to OnEvent once per (conv_id, seq) and queues its ack.
func (c *Client) deliver(ev protocol.Event, pushed bool) {
	c.dmu.Lock()
	s := c.seen[ev.ConvID]
	if s == nil {
		s = &seenSet{floor: -1, set: map[int64]struct{}{}} // seq 0 is a valid seq
		c.seen[ev.ConvID] = s
	}
	fresh := s.add(ev.Seq)
	if fresh {
		if c.cfg.OnEventVia != nil {
			c.cfg.OnEventVia(ev, pushed)
		} else if c.cfg.OnEvent != nil {
			c.cfg.OnEvent(ev)
		}
	}
	c.dmu.Unlock()
	if !fresh {
		c.dropped.Add(1)
		return
	}
	if pushed {
		c.pushes.Add(1)
	} else {
		c.synced.Add(1)
	}
	// Delivered receipts are for messages from someone else only (acking
	// receipts would produce receipts of receipts).
	if !c.cfg.NoAutoAck && ev.Kind == protocol.KindMessage && ev.From != c.User() {
		c.queueAcks([]protocol.AckItem{{ConvID: ev.ConvID, Seq: ev.Seq}})
	}
}

// maxPendingAcks bounds the conversations with an ack waiting to be sent
// (while disconnected, syncs go on and acks pile up). Acks of further
// conversations are dropped: receipts are best effort and cumulative, the
// next ack in such a conversation covers the dropped one.
const maxPendingAcks = 4096

// queueAcks merges items into the acks waiting for the next flush, keeping
// the highest seq per conversation.
func (c *Client) queueAcks(items []protocol.AckItem) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	for _, it := range items {
		cur, ok := c.acks[it.ConvID]
		switch {
		case !ok && len(c.acks) >= maxPendingAcks:
			c.acksDropped.Add(1)
		case !ok || it.Seq > cur:
			c.acks[it.ConvID] = it.Seq
		}
	}
}

// User is the client's user id, as the node's welcome said.
func (c *Client) User() string {
	u, _ := c.user.Load().(string)
	return u
}

func (c *Client) flushAcks() {
	c.ackMu.Lock()
	if len(c.acks) == 0 {
		c.ackMu.Unlock()
		return
	}
	items := make([]protocol.AckItem, 0, len(c.acks))
	for conv, seq := range c.acks {
		items = append(items, protocol.AckItem{ConvID: conv, Seq: seq})
	}
	c.acks = map[string]int64{}
	c.ackMu.Unlock()
	for len(items) > 0 {
		n := min(len(items), protocol.MaxAcksPerFrame)
		if err := c.write(protocol.ClientFrame{Type: protocol.FrameAck, Acks: items[:n]}); err != nil {
			// Not written (the socket broke, or no connection): keep them
			// for the next flush, on this session or the next one.
			c.queueAcks(items)
			return
		}
		items = items[n:]
	}
}

// SendResult is the answer to a send over the socket: the message API's
// HTTP status and body (Result) or error.
type SendResult struct {
	Status int
	Result json.RawMessage
}

// Send sends a message over the socket; req is the JSON the message API's
// send endpoint takes. Same idempotency and ack meaning as the HTTP API:
// retry with the same client_msg_id after an error or a lost connection.
func (c *Client) Send(ctx context.Context, req any) (SendResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return SendResult{}, err
	}
	id := strconv.FormatInt(c.reqID.Add(1), 10)
	ch := make(chan sendAnswer, 1)
	c.smu.Lock()
	c.pending[id] = ch
	c.smu.Unlock()
	if err := c.write(protocol.ClientFrame{Type: protocol.FrameSend, ID: id, Send: body}); err != nil {
		c.smu.Lock()
		delete(c.pending, id)
		c.smu.Unlock()
		return SendResult{}, fmt.Errorf("while sending: %w", err)
	}
	select {
	case a := <-ch:
		if a.err != nil {
			return SendResult{Status: a.status}, srvErr(*a.err)
		}
		return SendResult{Status: a.status, Result: a.result}, nil
	case <-ctx.Done():
		c.smu.Lock()
		delete(c.pending, id)
		c.smu.Unlock()
		return SendResult{}, ctx.Err()
	}
}

var errConnLost = errors.New("connection lost before the answer; retry with the same client_msg_id")

func (c *Client) failPending() {
	c.smu.Lock()
	p := c.pending
	c.pending = map[string]chan sendAnswer{}
	c.smu.Unlock()
	for _, ch := range p {
		ch <- sendAnswer{status: 0, err: &protocol.Error{Code: protocol.ErrUnavailable, Message: errConnLost.Error()}}
	}
}
