package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	userKey     = []byte(strings.Repeat("u", 32))
	serviceKey  = []byte(strings.Repeat("s", 32))
	internalKey = []byte(strings.Repeat("i", 32))
)

func mustSigner(t *testing.T, k Kind, key []byte) *Signer {
	t.Helper()
	s, err := NewSigner(k, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authenticator(t *testing.T) *Authenticator {
	t.Helper()
	mk := func(k Kind, key []byte) *Verifier {
		v, err := NewVerifier(k, key)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return &Authenticator{User: mk(KindUser, userKey), Service: mk(KindService, serviceKey), Internal: mk(KindInternal, internalKey)}
}

func TestAuthenticate(t *testing.T) {
	a := authenticator(t)
	good, _ := mustSigner(t, KindUser, userKey).Sign("alice", time.Minute)
	svc, _ := mustSigner(t, KindService, serviceKey).Sign("crm", time.Minute)
	expired, _ := mustSigner(t, KindUser, userKey).Sign("alice", -time.Minute)
	// A user-kind token signed with the service key, and a service-kind
	// token signed with the user key: wrong key for the kind.
	wrongKey, _ := mustSigner(t, KindUser, serviceKey).Sign("alice", time.Minute)
	wrongKind, _ := mustSigner(t, KindService, userKey).Sign("alice", time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{Kind: KindUser, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}})
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	forged := good[:len(good)-4] + "AAAA"
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Kind: KindUser, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Subject: "a:b", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}}).SignedString(userKey)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Kind: KindUser, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Subject: "alice"}}).SignedString(userKey)
	otherIss, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Kind: KindUser, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "evil", Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}}).SignedString(userKey)

	if p, err := a.Authenticate("Bearer " + good); err != nil || p != (Principal{KindUser, "alice"}) {
		t.Fatalf("good user token: %+v %v", p, err)
	}
	if p, err := a.Authenticate("bearer " + svc); err != nil || p != (Principal{KindService, "crm"}) {
		t.Fatalf("good service token: %+v %v", p, err)
	}
	for name, h := range map[string]string{
		"empty": "", "basic": "Basic abc", "bearer only": "Bearer ",
		"expired": "Bearer " + expired, "wrong key": "Bearer " + wrongKey, "wrong kind": "Bearer " + wrongKind,
		"alg none": "Bearer " + noneTok, "forged": "Bearer " + forged, "bad subject": "Bearer " + badSub,
		"no exp": "Bearer " + noExp, "other issuer": "Bearer " + otherIss, "garbage": "Bearer x.y.z",
	} {
		if p, err := a.Authenticate(h); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		} else if name != "empty" && name != "basic" && name != "bearer only" && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: error %v does not wrap ErrInvalidToken", name, err)
		}
	}
}

func TestActingUser(t *testing.T) {
	cases := []struct {
		p     Principal
		actAs string
		want  string
		ok    bool
	}{
		{Principal{KindUser, "alice"}, "", "alice", true},
		{Principal{KindUser, "alice"}, "alice", "alice", true},
		{Principal{KindUser, "alice"}, "bob", "", false},
		{Principal{KindService, "crm"}, "bob", "bob", true},
		{Principal{KindService, "crm"}, "", "", false},
		{Principal{KindService, "crm"}, "b/ob", "", false},
		{Principal{KindInternal, "push-1"}, "carol", "carol", true},
		{Principal{"other", "x"}, "carol", "", false},
	}
	for _, c := range cases {
		got, err := c.p.ActingUser(c.actAs)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%+v act as %q: %q %v", c.p, c.actAs, got, err)
		}
		if err != nil && !errors.Is(err, ErrActAs) {
			t.Errorf("%+v: error %v does not wrap ErrActAs", c.p, err)
		}
	}
}

func TestSignerRefusesShortKeysAndBadSubjects(t *testing.T) {
	if _, err := NewSigner(KindUser, []byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := NewVerifier(KindUser, []byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	s := mustSigner(t, KindUser, userKey)
	for _, sub := range []string{"", "a:b", "a/b", strings.Repeat("x", 65), "é"} {
		if _, err := s.Sign(sub, time.Minute); err == nil {
			t.Errorf("subject %q accepted", sub)
		}
	}
}

func TestVerifyExpiry(t *testing.T) {
	s := mustSigner(t, KindUser, userKey)
	v, _ := NewVerifier(KindUser, userKey)
	tok, _ := s.Sign("ann", 90*time.Second)
	sub, exp, err := v.VerifyExpiry(tok)
	if err != nil || sub != "ann" {
		t.Fatalf("VerifyExpiry = %q, %v", sub, err)
	}
	if d := time.Until(exp); d < 85*time.Second || d > 91*time.Second {
		t.Fatalf("expiry in %v, want about 90s", d)
	}
	if _, _, err := v.VerifyExpiry("garbage"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("garbage token: %v", err)
	}
}
