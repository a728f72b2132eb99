package push_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
	"github.com/imcluster/imcluster/services/tlsconf"
	"github.com/imcluster/imcluster/services/tlsconf/tlstest"
)

// tlsNode runs a push node whose WebSocket listener serves wss:// with the
// pair of sec (followed every 20 ms), forwarding to messageURL with
// messageTLS. It returns the wss URL, the listener address and the pair.
func tlsNode(t *testing.T, sec *tlstest.SecretDir, messageURL string, messageTLS *tls.Config) (string, string, *tlsconf.CertFile) {
	t.Helper()
	cf, err := tlsconf.LoadCertFile(sec.Cert(), sec.Key())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go cf.Watch(ctx, 20*time.Millisecond, nil)
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "n1")
	srv, err := push.New(push.Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts,
		MessageURL: messageURL, MessageTLS: messageTLS})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, tlsconf.ServerConfig(cf))) }()
	t.Cleanup(func() { cancel(); _ = ln.Close(); srv.Close() })
	return "wss://localhost:" + portOf(ln) + "/", ln.Addr().String(), cf
}

func portOf(ln net.Listener) string {
	return ln.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):]
}

// httpsTier is a message tier stand-in over https that answers sends.
func httpsTier(t *testing.T) (*httptest.Server, *tls.Config) {
	tier := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"msg_id":"m-tls"}`))
	}))
	t.Cleanup(tier.Close)
	pool := x509.NewCertPool()
	pool.AddCert(tier.Certificate())
	return tier, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestWSSServesAndRefusesUntrustingClients: a device trusting the CA logs
// in over wss:// and its forwarded send reaches an https:// message tier
// through the configured CA; a device without the CA is refused by its
// own TLS check.
func TestWSSServesAndRefusesUntrustingClients(t *testing.T) {
	ca := tlstest.NewCA(t, "push-ca")
	sec := tlstest.NewSecretDir(t)
	c1, k1, _ := ca.Issue(t)
	sec.Pair(t, ca, c1, k1)
	tier, tierTLS := httpsTier(t)
	url, _, _ := tlsNode(t, sec, tier.URL, tierTLS)

	cl := client.New(client.Config{URLs: []string{url}, Token: userToken(t, "tia"), DeviceID: "d", Terminal: "web",
		NoSync: true, TLS: ca.ClientConfig()})
	cl.Start()
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	res, err := cl.Send(ctx, map[string]any{"to": "x", "client_msg_id": "c", "type": "text", "body": map[string]string{"text": "hi"}})
	if err != nil || !bytes.Contains(res.Result, []byte("m-tls")) {
		t.Fatalf("forwarded send over https: %d %s, %v", res.Status, res.Result, err)
	}

	_, _, _, err = ws.Dialer{}.Dial(ctx, url) // system roots only
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("dial without the CA: err=%v, want unknown authority", err)
	}
}

// TestWSSPipelinedFramesAreRead: frames that arrive in one TLS record are
// all read. Had the connection been left to the epoll poller, the second
// frame would sit decrypted in the tls.Conn with no socket readiness to
// wake a reader, and the send would never be answered.
func TestWSSPipelinedFramesAreRead(t *testing.T) {
	ca := tlstest.NewCA(t, "push-ca")
	sec := tlstest.NewSecretDir(t)
	c1, k1, _ := ca.Issue(t)
	sec.Pair(t, ca, c1, k1)
	tier, tierTLS := httpsTier(t)
	url, _, _ := tlsNode(t, sec, tier.URL, tierTLS)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, _, _, err := ws.Dialer{TLSConfig: ca.ClientConfig()}.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	var buf bytes.Buffer
	login, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: userToken(t, "pia"), DeviceID: "d", Terminal: "web"})
	send, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameSend, ID: "r1",
		Send: json.RawMessage(`{"to":"x","client_msg_id":"c","type":"text","body":{"text":"hi"}}`)})
	for _, p := range [][]byte{login, send} {
		if err := wsutil.WriteClientMessage(&buf, ws.OpText, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.Write(buf.Bytes()); err != nil { // one write, one record
		t.Fatal(err)
	}
	r := rawConn{nc}
	if f := r.next(t); f.Type != protocol.FrameWelcome {
		t.Fatalf("got %+v, want welcome", f)
	}
	if f := r.next(t); f.Type != protocol.FrameSendResult || f.ID != "r1" {
		t.Fatalf("got %+v, want the send_result of r1", f)
	}
}

// TestWSSCertificateRotation: a new pair written the way the kubelet
// updates a Secret is served without restart; a bad rewrite (key of
// another certificate) is refused and the last good pair stays in use.
func TestWSSCertificateRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "push-ca")
	sec := tlstest.NewSecretDir(t)
	c1, k1, s1 := ca.Issue(t)
	sec.Pair(t, ca, c1, k1)
	url, addr, cf := tlsNode(t, sec, "http://127.0.0.1:1", nil)
	trust := ca.ClientConfig()
	trust.ServerName = "localhost"
	tlstest.AwaitSerial(t, addr, trust, s1, 5*time.Second)

	c2, k2, s2 := ca.Issue(t)
	sec.Pair(t, ca, c2, k2)
	tlstest.AwaitSerial(t, addr, trust, s2, 5*time.Second)

	_, k3, _ := ca.Issue(t)
	sec.Pair(t, ca, c2, k3)
	deadline := time.Now().Add(5 * time.Second)
	for cf.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("bad rewrite never noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := tlstest.PeerSerial(addr, trust); err != nil || got.Cmp(s2) != 0 {
		t.Fatalf("after a bad rewrite: serial %v, err %v; want %v still", got, err, s2)
	}
	// And devices still log in with it.
	cl := client.New(client.Config{URLs: []string{url}, Token: userToken(t, "ria"), DeviceID: "d", Terminal: "web",
		NoSync: true, TLS: ca.ClientConfig()})
	cl.Start()
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
}
