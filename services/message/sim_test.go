package message_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

type cfgT = config.Message

func tokenFor(t *testing.T, s *auth.Signer, sub string) string { return msgtest.Token(t, s, sub) }

func mustSigner(t *testing.T, k auth.Kind, key []byte) *auth.Signer {
	t.Helper()
	s, err := auth.NewSigner(k, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustKey(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type simSend struct {
	rec model.Record
}

func (s simSend) msgID() string { return s.rec.MsgID }

func (e *env) producer(t *testing.T) *mlog.Producer {
	t.Helper()
	p, err := mlog.NewProducer(e.cfg.Kafka, e.cfg.Topic, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func simulateClaimOnly(t *testing.T, e *env, from, to, cmid, body string, at time.Time) simSend {
	t.Helper()
	b := &protocol.Body{Text: body}
	rec := model.Record{Kind: protocol.KindMessage, ConvID: model.ConvID(from, to), From: from, AtMs: at.UnixMilli(),
		MsgID: uuid.NewString(), ClientMsgID: cmid, Type: protocol.TypeText, Body: b}
	_, applied, err := e.st.ClaimIdempotency(context.Background(), from, cmid, store.Idem{MsgID: rec.MsgID, ConvID: rec.ConvID,
		Hash: model.ContentHash(to, protocol.TypeText, b), CreatedMs: rec.AtMs})
	if err != nil || !applied {
		t.Fatalf("claim: applied=%v %v", applied, err)
	}
	return simSend{rec}
}

// simulateCrashedAttempt claims the key and produces the record, but never
// records the offset: an API process that died right after the ack.
func simulateCrashedAttempt(t *testing.T, e *env, from, to, cmid, body string, at time.Time) simSend {
	t.Helper()
	s := simulateClaimOnly(t, e, from, to, cmid, body, at)
	v, err := s.rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.producer(t).Produce(s.rec.ConvID, v); err != nil {
		t.Fatal(err)
	}
	return s
}

func produceRetry(t *testing.T, e *env, s simSend) {
	t.Helper()
	r := s.rec
	r.Retry = true
	v, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.producer(t).Produce(r.ConvID, v); err != nil {
		t.Fatal(err)
	}
}
