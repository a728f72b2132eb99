package push

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"testing"
)

// trickle yields its data, then a deadline error (a client that announced
// a big frame and stopped sending).
type trickle struct{ data []byte }

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, t.data)
	t.data = t.data[n:]
	return n, nil
}

func TestReadPayload(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	cases := []struct {
		name    string
		r       io.Reader
		n       int64
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(big), int64(len(big)), big, nil},
		{"small", bytes.NewReader([]byte(`{"type":"ping"}`)), 15, []byte(`{"type":"ping"}`), nil},
		{"empty", bytes.NewReader(nil), 0, []byte{}, nil},
		{"peer closed midway", bytes.NewReader(big[:100]), int64(len(big)), nil, io.ErrUnexpectedEOF},
		{"timeout midway", &trickle{big[:100]}, int64(len(big)), nil, os.ErrDeadlineExceeded},
		{"one byte at a time", io.MultiReader(bytes.NewReader(big[:1]), bytes.NewReader(big[1:9000])), 9000, big[:9000], nil},
	}
	for _, tc := range cases {
		got, err := readPayload(tc.r, tc.n)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && !bytes.Equal(got, tc.want)) {
			t.Errorf("%s: %d bytes, %v; want %d bytes, %v", tc.name, len(got), err, len(tc.want), tc.wantErr)
		}
	}
}

// TestTrickledFrameHoldsLittleMemory: a frame that announces 64 KiB and
// sends 10 bytes costs the node a few KiB, not 64 KiB.
func TestTrickledFrameHoldsLittleMemory(t *testing.T) {
	const frames = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < frames; i++ {
		if _, err := readPayload(&trickle{[]byte("0123456789")}, 64<<10); err == nil {
			t.Fatal("a trickled frame was read whole")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / frames; per > 16<<10 {
		t.Fatalf("%d bytes allocated per trickled frame, want at most 16 KiB", per)
	}
}
