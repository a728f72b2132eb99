package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/webhook/wire"
)

// Gate calls the before_send webhook: api.SendGate.
type Gate struct {
	url      string
	timeout  time.Duration
	failOpen bool
	secret   []byte
	hc       *http.Client
	// Now signs requests (nil: time.Now); tests move it.
	Now func() time.Time
}

var _ api.SendGate = (*Gate)(nil)

// maxAnswerBytes bounds a webhook's answer (a replaced body and a little more).
const maxAnswerBytes = model.MaxBodyCeiling + 4<<10

// NewGate returns the before_send gate of cfg (cfg.BeforeSendURL set),
// signing with secret.
func NewGate(cfg config.Webhook, secret []byte) *Gate {
	return &Gate{url: cfg.BeforeSendURL, timeout: cfg.BeforeSendTimeout, failOpen: cfg.BeforeSendFailOpen,
		secret: secret, hc: &http.Client{Transport: newTransport()}}
}

// newTransport keeps connections to the receiver warm: a new TCP (and TLS)
// handshake per send would cost more than the check itself.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// FailOpen implements api.SendGate.
func (g *Gate) FailOpen() bool { return g.failOpen }

// BeforeSend implements api.SendGate: one signed POST within the timeout.
func (g *Gate) BeforeSend(ctx context.Context, in api.GateRequest) (api.GateDecision, error) {
	t0 := time.Now()
	d, err := g.call(ctx, in)
	outcome := "allow"
	switch {
	case err != nil:
		outcome = "failed"
	case d.Refuse:
		outcome = "refuse"
	case d.Body != nil:
		outcome = "replace"
	}
	mBeforeSend.WithLabelValues(outcome).Observe(time.Since(t0).Seconds())
	return d, err
}

func (g *Gate) call(ctx context.Context, in api.GateRequest) (api.GateDecision, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	body, err := json.Marshal(wire.BeforeSend{Type: wire.EventBeforeSend, MsgID: in.MsgID, ConvID: in.ConvID, From: in.From,
		DeviceID: in.DeviceID, To: in.To, ClientMsgID: in.ClientMsgID, MessageType: in.Type, Body: in.Body,
		Attempt: in.Attempt, AtMs: in.AtMs})
	if err != nil {
		return api.GateDecision{}, fmt.Errorf("while encoding before_send: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(body))
	if err != nil {
		return api.GateDecision{}, fmt.Errorf("while building before_send request: %w", err)
	}
	sign(req, g.secret, wire.EventBeforeSend, body, g.now())
	resp, err := g.hc.Do(req)
	if err != nil {
		return api.GateDecision{}, fmt.Errorf("while calling before_send: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return api.GateDecision{}, fmt.Errorf("before_send answered %d", resp.StatusCode)
	}
	var a wire.BeforeSendAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&a); err != nil {
		return api.GateDecision{}, fmt.Errorf("%w: %v", api.ErrGateInvalid, err)
	}
	switch a.Action {
	case wire.ActionAllow, "":
		return api.GateDecision{}, nil
	case wire.ActionRefuse:
		if err := wire.ValidReason(a.Reason); err != nil {
			return api.GateDecision{}, fmt.Errorf("%w: %v", api.ErrGateInvalid, err)
		}
		if len(a.Message) > 256 {
			a.Message = a.Message[:256]
		}
		return api.GateDecision{Refuse: true, Reason: a.Reason, Message: a.Message}, nil
	case wire.ActionReplace:
		if a.Body == nil {
			return api.GateDecision{}, fmt.Errorf("%w: replace without body", api.ErrGateInvalid)
		}
		return api.GateDecision{Body: a.Body}, nil
	}
	return api.GateDecision{}, fmt.Errorf("%w: action %q", api.ErrGateInvalid, a.Action)
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// sign sets the event and signature headers of req.
func sign(req *http.Request, secret []byte, event string, body []byte, now time.Time) {
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "imcluster-webhook/1")
	req.Header.Set(wire.HeaderEvent, event)
	req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(wire.HeaderSignature, wire.Signature(secret, ts, body))
}

// errPermanent marks a delivery failure that retrying cannot fix (a 4xx
// other than 408 and 429): the event goes to the dead-letter topic at once.
var errPermanent = errors.New("permanent failure")
