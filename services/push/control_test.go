package push_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcluster/imcluster/services/protocol"
)

// writeFrame writes one masked client frame as is (no validation).
func writeFrame(t *testing.T, nc net.Conn, fin bool, op ws.OpCode, p []byte) {
	t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), p...))
	if err := ws.WriteFrame(nc, ws.MaskFrameInPlace(f)); err != nil {
		t.Fatal(err)
	}
}

func closePayload(code uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, reason...)
}

// readServerFrame reads one frame of the server's, refusing payloads over
// 1 MiB (ws.ReadFrame would trust any declared length).
func readServerFrame(nc net.Conn) (ws.Frame, error) {
	h, err := ws.ReadHeader(nc)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(nc, payload); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: payload}, nil
}

// readUntilClose returns the error frame's code (if any), the close
// frame's status and the pongs received before it.
func readUntilClose(t *testing.T, nc net.Conn) (code string, status ws.StatusCode, pongs [][]byte) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := readServerFrame(nc)
		if err != nil {
			t.Fatalf("no close frame: %v (error code %q)", err, code)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			var sf protocol.ServerFrame
			if json.Unmarshal(f.Payload, &sf) == nil && sf.Error != nil {
				code = sf.Error.Code
			}
		case ws.OpPong:
			pongs = append(pongs, f.Payload)
		case ws.OpClose:
			st, _ := ws.ParseCloseFrameData(f.Payload)
			return code, st, pongs
		}
	}
}

// TestControlFramesFollowRFC6455: control frames over 125 bytes or
// fragmented, close frames with a reserved, unassigned or truncated status
// code and unknown opcodes fail the connection with 1002 (protocol error)
// instead of being echoed; valid close codes are echoed; a 125-byte ping
// is still answered.
func TestControlFramesFollowRFC6455(t *testing.T) {
	_, url := bareNode(t, "http://127.0.0.1:1", nil, nil)
	big := bytes.Repeat([]byte("p"), 126)
	cases := []struct {
		name       string
		fin        bool
		op         ws.OpCode
		payload    []byte
		wantStatus ws.StatusCode
		wantCode   string
	}{
		{"ping of 126 bytes", true, ws.OpPing, big, ws.StatusProtocolError, protocol.ErrBadJSON},
		{"pong of 126 bytes", true, ws.OpPong, big, ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close of 126 bytes", true, ws.OpClose, closePayload(1000, strings.Repeat("r", 124)), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"fragmented ping", false, ws.OpPing, []byte("x"), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"reserved opcode", true, ws.OpCode(0x3), []byte("x"), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close with one byte", true, ws.OpClose, []byte{3}, ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 999", true, ws.OpClose, closePayload(999, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 1004", true, ws.OpClose, closePayload(1004, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 1005 (reserved)", true, ws.OpClose, closePayload(1005, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 1006 (reserved)", true, ws.OpClose, closePayload(1006, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 1015 (reserved)", true, ws.OpClose, closePayload(1015, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 2999", true, ws.OpClose, closePayload(2999, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close 5000", true, ws.OpClose, closePayload(5000, ""), ws.StatusProtocolError, protocol.ErrBadJSON},
		{"close reason not UTF-8", true, ws.OpClose, closePayload(1000, "\xff\xfe"), protocol.CloseInvalidData, protocol.ErrInvalidUTF8},
		{"close 1000 echoed", true, ws.OpClose, closePayload(1000, "bye"), ws.StatusNormalClosure, ""},
		{"close 1001 echoed", true, ws.OpClose, closePayload(1001, ""), ws.StatusGoingAway, ""},
		{"close 3000 echoed", true, ws.OpClose, closePayload(3000, ""), 3000, ""},
		{"close 4999 echoed", true, ws.OpClose, closePayload(4999, ""), 4999, ""},
		{"empty close", true, ws.OpClose, nil, ws.StatusNormalClosure, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc := dialRaw(t, url)
			writeFrame(t, nc, tc.fin, tc.op, tc.payload)
			code, status, _ := readUntilClose(t, nc)
			if status != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("closed with %d %q, want %d %q", status, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
	t.Run("ping of 125 bytes answered", func(t *testing.T) {
		nc := dialRaw(t, url)
		p := bytes.Repeat([]byte("q"), 125)
		writeFrame(t, nc, true, ws.OpPing, p)
		writeFrame(t, nc, true, ws.OpClose, closePayload(1000, ""))
		_, status, pongs := readUntilClose(t, nc)
		if len(pongs) != 1 || !bytes.Equal(pongs[0], p) || status != ws.StatusNormalClosure {
			t.Fatalf("pongs %q, close %d; want the ping's payload back, then 1000", pongs, status)
		}
	})
}
