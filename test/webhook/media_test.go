//go:build linux

package webhook

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestMediaMessages (issue 12, item 5): an image, a file, a voice and a
// video message (URL and metadata) go through send, push, sync, history and
// recall unchanged; a media message without a URL is refused.
func TestMediaMessages(t *testing.T) {
	c := newCluster(t)
	msg := c.startMessage("message-1", false)
	push := c.startPush("push-1", msg)
	bob := c.connect(msg, push, "bob", "bob-phone")
	eventually(t, "bob online", 10*time.Second, func() bool { return c.sessions("bob") == 1 })
	conv := model.ConvID("alice", "bob")
	media := []struct {
		typ  protocol.MessageType
		body protocol.Body
	}{
		{protocol.TypeImage, protocol.Body{URL: "https://cdn.example.com/i/cat.jpg", Name: "cat.jpg", MIME: "image/jpeg", Size: 48213, Width: 1024, Height: 768, Text: "a cat"}},
		{protocol.TypeFile, protocol.Body{URL: "https://cdn.example.com/f/report.pdf", Name: "report.pdf", MIME: "application/pdf", Size: 1 << 20}},
		{protocol.TypeVoice, protocol.Body{URL: "https://cdn.example.com/v/hello.opus", MIME: "audio/ogg", Size: 9000, DurationMs: 4200}},
		{protocol.TypeVideo, protocol.Body{URL: "https://cdn.example.com/m/clip.mp4", Name: "clip.mp4", MIME: "video/mp4", Size: 5 << 20, DurationMs: 15000, Width: 1280, Height: 720}},
	}
	seqs := map[protocol.MessageType]int64{}
	for _, m := range media {
		body := m.body
		res, err := c.send(msg, "alice", "bob", m.typ, &body)
		if err != nil {
			t.Fatalf("send %s: %v", m.typ, err)
		}
		seqs[m.typ] = *res.Seq
		ev := awaitEvent(t, bob, "push of "+string(m.typ), func(e protocol.Event) bool { return e.Message != nil && e.Message.MsgID == res.MsgID })
		if ev.Message.Type != m.typ || !reflect.DeepEqual(*ev.Message.Body, m.body) {
			t.Fatalf("%s pushed as %s %+v", m.typ, ev.Message.Type, ev.Message.Body)
		}
		if _, pushed, _ := bob.event(func(e protocol.Event) bool { return e.Message != nil && e.Message.MsgID == res.MsgID }); !pushed {
			t.Fatalf("%s reached bob by sync, not push", m.typ)
		}
	}

	// Sync from the start: all four, intact (each user's feed entries
	// follow the pushes within about a second).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var page client.SyncPage
	eventually(t, "all four in bob's sync", 10*time.Second, func() bool {
		p, err := client.FetchSync(ctx, http.DefaultClient, msg.api, c.token("bob"), "")
		if err != nil {
			return false
		}
		page = p
		n := 0
		for _, e := range p.Events {
			for _, m := range media {
				if e.Kind == protocol.KindMessage && e.Seq == seqs[m.typ] {
					n++
				}
			}
		}
		return n == len(media)
	})
	check := func(where string, evs []protocol.Event) {
		t.Helper()
		found := 0
		for _, e := range evs {
			for _, m := range media {
				if e.Kind == protocol.KindMessage && e.Seq == seqs[m.typ] {
					found++
					if e.Message.Type != m.typ || e.Message.Body == nil || !reflect.DeepEqual(*e.Message.Body, m.body) {
						t.Fatalf("%s: %s is %s %+v", where, m.typ, e.Message.Type, e.Message.Body)
					}
				}
			}
		}
		if found != len(media) {
			t.Fatalf("%s: %d of %d media messages", where, found, len(media))
		}
	}
	check("sync", page.Events)
	var h struct{ Messages []protocol.Event }
	api := c.api(msg, "bob", "bob-phone")
	if err := api.Get(ctx, "/v1/conversations/"+conv+"/messages", &h); err != nil {
		t.Fatal(err)
	}
	check("history", h.Messages)

	// Recall the video: a recall event is pushed, history drops the body.
	if err := c.api(msg, "alice", "alice-dev").Recall(ctx, conv, seqs[protocol.TypeVideo]); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, bob, "recall pushed", func(e protocol.Event) bool {
		return e.Kind == protocol.KindRecall && e.RefSeq == seqs[protocol.TypeVideo]
	})
	eventually(t, "history shows the video recalled", 20*time.Second, func() bool {
		var h struct{ Messages []protocol.Event }
		if err := api.Get(ctx, "/v1/conversations/"+conv+"/messages", &h); err != nil {
			return false
		}
		for _, e := range h.Messages {
			if e.Seq == seqs[protocol.TypeVideo] {
				return e.Message.Recalled && e.Message.Body == nil
			}
		}
		return false
	})

	// A media message needs its URL.
	_, err := c.send(msg, "alice", "bob", protocol.TypeImage, &protocol.Body{Name: "no-url.png"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != protocol.ErrInvalidField {
		t.Fatalf("image without url: %v", err)
	}
}

func awaitEvent(t *testing.T, d *device, what string, f func(protocol.Event) bool) protocol.Event {
	t.Helper()
	var ev protocol.Event
	eventually(t, what, 20*time.Second, func() bool {
		e, _, ok := d.event(f)
		ev = e
		return ok
	})
	return ev
}
