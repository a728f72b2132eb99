package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/imcluster/imcluster/services/protocol"
)

// deliver hands ev to the app once per (conv_id, seq) and queues its ack.
// The bounded memory (dedupe.go) drops the repeats it recognises; any
// other event goes to the app's Known when set (the store also knows what
// this Client never saw: events stored before a restart). Without Known,
// an event memory cannot judge is handed on (a repeat the app's store
// absorbs is better than a miss) and counted (Unsure).
func (c *Client) deliver(ev protocol.Event, pushed bool) {
	c.dmu.Lock()
	seen, sure := c.seen.check(ev.ConvID, ev.Seq)
	fresh := !seen
	switch {
	case seen:
	case c.cfg.Known != nil:
		fresh = !c.cfg.Known(ev)
	case !sure:
		c.unsure.Add(1)
	}
	if fresh {
		c.seen.add(ev.ConvID, ev.Seq)
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
		// Every pushed event comes back by the next sync; syncing every
		// syncAfterPushes pushes keeps those replays recent, hence within
		// the dedupe memory (a long session would otherwise replay hours
		// of pushes, across more conversations than memory holds).
		if n := c.pushedSinceSync.Add(1); n%syncAfterPushes == 0 {
			c.requestSync()
		}
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
