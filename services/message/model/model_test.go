package model

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/services/protocol"
)

func TestConvID(t *testing.T) {
	if a, b := ConvID("bob", "alice"), ConvID("alice", "bob"); a != b || a != "p:alice:bob" {
		t.Fatalf("ConvID not symmetric: %q %q", a, b)
	}
	for _, bad := range []string{"", "p:", "p:a", "p:b:a", "p:a:a", "x:a:b", "p:a:b:c", "p:a/b:c"} {
		if _, _, err := ParseConvID(bad); err == nil {
			t.Errorf("ParseConvID(%q) accepted", bad)
		}
	}
	if p, ok := Peer("p:alice:bob", "bob"); !ok || p != "alice" {
		t.Fatalf("Peer = %q %v", p, ok)
	}
	if _, ok := Peer("p:alice:bob", "carol"); ok {
		t.Fatal("carol is not in p:alice:bob")
	}
}

func TestSyncCursorRoundTrip(t *testing.T) {
	c := NewSyncCursor(12)
	c.Next[3] = 1 << 40
	c.Next[11] = 7
	got, err := DecodeSyncCursor(c.Encode(), 12)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Next {
		if got.Next[i] != c.Next[i] {
			t.Fatalf("partition %d: %d != %d", i, got.Next[i], c.Next[i])
		}
	}
	if _, err := DecodeSyncCursor(c.Encode(), 6); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("cursor for 12 partitions accepted for 6: %v", err)
	}
	for _, bad := range []string{"!!", "AAAA", strings.Repeat("A", 70000), UnreadCursor{ConvID: "p:a:b"}.Encode()} {
		if _, err := DecodeSyncCursor(bad, 12); !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeSyncCursor(%.20q) = %v", bad, err)
		}
	}
	// The time horizon round-trips; a cursor without it (version 's') is
	// still accepted, with SinceMs 0.
	c.SinceMs = 1795934254323
	got, err = DecodeSyncCursor(c.Encode(), 12)
	if err != nil || got.SinceMs != c.SinceMs || got.Next[3] != c.Next[3] {
		t.Fatalf("timed cursor: %+v %v", got, err)
	}
	legacy := []byte{'s', 2, 5, 0}
	got, err = DecodeSyncCursor(base64.RawURLEncoding.EncodeToString(legacy), 2)
	if err != nil || got.SinceMs != 0 || got.Next[0] != 5 {
		t.Fatalf("legacy cursor: %+v %v", got, err)
	}
	trunc := c.Encode()
	raw, _ := base64.RawURLEncoding.DecodeString(trunc)
	if _, err := DecodeSyncCursor(base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]), 12); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("truncated timed cursor: %v", err)
	}
}

func TestUnreadCursorRoundTrip(t *testing.T) {
	c := UnreadCursor{ConvID: "p:alice:bob", After: 42}
	got, err := DecodeUnreadCursor(c.Encode())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := DecodeUnreadCursor(NewSyncCursor(2).Encode()); err == nil {
		t.Fatal("sync cursor accepted as unread cursor")
	}
}

func TestRecordValidate(t *testing.T) {
	ok := Record{Kind: protocol.KindMessage, ConvID: "p:alice:bob", From: "alice", AtMs: 1,
		MsgID: "m1", ClientMsgID: "c1", Type: protocol.TypeText, Body: &protocol.Body{Text: "hi"}}
	enc, err := ok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(enc, 1024); err != nil {
		t.Fatalf("valid record refused: %v", err)
	}
	cases := map[string]func(r *Record){
		"not a participant": func(r *Record) { r.From = "carol" },
		"unknown kind":      func(r *Record) { r.Kind = "poke" },
		"no body":           func(r *Record) { r.Body = nil },
		"empty text":        func(r *Record) { r.Body = &protocol.Body{} },
		"image without url": func(r *Record) { r.Type = protocol.TypeImage },
		"bad type":          func(r *Record) { r.Type = "gif" },
		"no client id":      func(r *Record) { r.ClientMsgID = "" },
		"space in id":       func(r *Record) { r.ClientMsgID = "a b" },
		"too large":         func(r *Record) { r.Body = &protocol.Body{Text: strings.Repeat("x", 2000)} },
		"bad utf8":          func(r *Record) { r.Body = &protocol.Body{Text: "\xff"} },
		"no time":           func(r *Record) { r.AtMs = 0 },
		"read with body":    func(r *Record) { r.Kind = protocol.KindRead },
	}
	for name, mut := range cases {
		r := ok
		mut(&r)
		if err := r.Validate(1024); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, bad := range []string{`{`, `{"v":1,"zzz":1}`, `{"v":2}`, `{"v":1} {}`} {
		if _, err := Decode([]byte(bad), 1024); err == nil {
			t.Errorf("Decode(%s) accepted", bad)
		}
	}
}

func TestContentHash(t *testing.T) {
	a := ContentHash("bob", protocol.TypeText, &protocol.Body{Text: "hi"})
	b := ContentHash("bob", protocol.TypeText, &protocol.Body{Text: "hi"})
	c := ContentHash("bob", protocol.TypeText, &protocol.Body{Text: "hi!"})
	if string(a) != string(b) || string(a) == string(c) {
		t.Fatal("content hash not a function of content")
	}
}

func TestMessageIDIsDeterministicAndDistinct(t *testing.T) {
	tests := []struct {
		a, b     [2]string
		wantSame bool
	}{
		{[2]string{"alice", "c1"}, [2]string{"alice", "c1"}, true},
		{[2]string{"alice", "c1"}, [2]string{"bob", "c1"}, false},
		{[2]string{"alice", "c1"}, [2]string{"alice", "c2"}, false},
		{[2]string{"ab", "c"}, [2]string{"a", "bc"}, false}, // the separator keeps pairs apart
	}
	for _, tt := range tests {
		x, y := MessageID(tt.a[0], tt.a[1]), MessageID(tt.b[0], tt.b[1])
		if (x == y) != tt.wantSame {
			t.Errorf("MessageID(%v)=%s, MessageID(%v)=%s, want same=%v", tt.a, x, tt.b, y, tt.wantSame)
		}
		if len(x) != 36 || x[14] != '5' {
			t.Errorf("MessageID(%v) = %q, want a UUIDv5", tt.a, x)
		}
	}
}
