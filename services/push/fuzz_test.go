package push

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Frames come from any client: decoding never panics, a refused frame
// always has a close code, and an accepted frame encodes to a frame that
// decodes and encodes the same again. Run longer:
// go test -run=^$ -fuzz=FuzzDecodeClientFrame ./services/push/
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"login","token":"x.y.z","device_id":"d1","terminal":"ios"}`,
		`{"type":"ping"}`,
		`{"type":"ack","acks":[{"conv_id":"p:a:b","seq":3}]}`,
		`{"type":"send","id":"1","send":{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"hi"},"attempt":2}}`,
		`{"type":"ping"}{"type":"ping"}`,
		`{"type":"ping","extra":1}`,
		`[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fr, code, err := decodeClientFrame(payload)
		if err != nil {
			if code == "" {
				t.Fatalf("refused %q without a close code", payload)
			}
			return
		}
		enc, err := json.Marshal(fr)
		if err != nil {
			t.Fatalf("accepted frame %q does not encode: %v", payload, err)
		}
		back, _, err := decodeClientFrame(enc)
		if err != nil {
			t.Fatalf("re-encoded frame %s refused: %v", enc, err)
		}
		again, _ := json.Marshal(back)
		if !bytes.Equal(enc, again) {
			t.Fatalf("round trip: %s → %s", enc, again)
		}
	})
}
