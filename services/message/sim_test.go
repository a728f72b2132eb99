package message_test

import (
	"os"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
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

func (e *env) producer(t *testing.T) *mlog.Producer {
	t.Helper()
	p, err := mlog.NewProducer(e.cfg.Kafka, e.cfg.Topic, "test", api.SendDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// record is the message record the API produces for a send by from at at.
func record(from, to, cmid, body string, at time.Time) model.Record {
	return model.Record{Kind: protocol.KindMessage, ConvID: model.ConvID(from, to), From: from, AtMs: at.UnixMilli(),
		MsgID: model.MessageID(from, cmid), ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: body}}
}

// produceRecord puts r into the log as an API process would (a copy of a
// send whose answer was lost, or held).
func produceRecord(t *testing.T, e *env, r model.Record) {
	t.Helper()
	v, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.producer(t).Produce(r.ConvID, v); err != nil {
		t.Fatal(err)
	}
}
