package model

import (
	"reflect"
	"testing"

	"github.com/imcluster/imcluster/services/protocol"
)

// Whatever the log holds, Decode never panics; a record it accepts encodes
// and decodes back to itself. Seeds: testdata/fuzz/FuzzDecodeRecord and
// the cases below. Run longer: go test -run=^$ -fuzz=FuzzDecodeRecord ./services/message/model/
func FuzzDecodeRecord(f *testing.F) {
	r := Record{Kind: protocol.KindMessage, ConvID: ConvID("alice", "bob"), From: "alice", DeviceID: "d1", AtMs: 1,
		MsgID: MessageID("alice", "c1"), ClientMsgID: "c1", Type: protocol.TypeText, Body: &protocol.Body{Text: "hi"}}
	good, _ := r.Encode()
	f.Add(good)
	f.Add([]byte(`{"v":1,"kind":"read","conv_id":"p:alice:bob","from":"bob","at_ms":5,"ref_seq":3}`))
	f.Add([]byte(`{"v":1,"kind":"message","conv_id":"p:alice:bob","from":"carol","at_ms":1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := Decode(b, MaxBodyCeiling)
		if err != nil {
			return
		}
		again, err := rec.Encode()
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		back, err := Decode(again, MaxBodyCeiling)
		if err != nil || !reflect.DeepEqual(back, rec) {
			t.Fatalf("round trip: %+v → %s → %+v (%v)", rec, again, back, err)
		}
	})
}

// Cursors come from clients: parsing never panics, and an accepted one
// encodes back to a cursor that parses to the same value.
func FuzzDecodeSyncCursor(f *testing.F) {
	c := NewSyncCursor(4)
	c.Next[2], c.SinceMs = 77, 1_700_000_000_000
	f.Add(c.Encode(), 4)
	f.Add(NewSyncCursor(1).Encode(), 1)
	f.Add("", 3)
	f.Add("bm90IGEgY3Vyc29y", 2)
	f.Fuzz(func(t *testing.T, s string, partitions int) {
		if partitions < 1 || partitions > MaxPartitions {
			return
		}
		c, err := DecodeSyncCursor(s, partitions)
		if err != nil {
			return
		}
		back, err := DecodeSyncCursor(c.Encode(), partitions)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip of %q: %+v → %+v (%v)", s, c, back, err)
		}
	})
}

func FuzzDecodeUnreadCursor(f *testing.F) {
	f.Add(UnreadCursor{After: 5, ConvID: ConvID("a", "b")}.Encode())
	f.Add("")
	f.Add("dQ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeUnreadCursor(s)
		if err != nil || s == "" {
			return
		}
		back, err := DecodeUnreadCursor(c.Encode())
		if err != nil || back != c {
			t.Fatalf("round trip of %q: %+v → %+v (%v)", s, c, back, err)
		}
	})
}
