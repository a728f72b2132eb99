package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secretA = strings.Repeat("a", 32)
	secretB = strings.Repeat("b", 40)
	secretC = "0123456789abcdef0123456789abcdef"
)

func TestParseKeySet(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		ids     []string // nil: want an error
		primary string   // secret of the primary key
	}{
		{"old single-key format", secretA, []string{""}, secretA},
		{"old format with trailing newline", secretA + "\n", []string{""}, secretA},
		{"old format with CRLF", secretA + "\r\n", []string{""}, secretA},
		{"one key with kid", "k1:" + secretA + "\n", []string{"k1"}, secretA},
		{"several keys, first is primary", "k2:" + secretB + "\nk1:" + secretA + "\n", []string{"k2", "k1"}, secretB},
		{"comments, blanks and spaces", "# rotated 2026-11\n\n  k2:" + secretB + "  \n\t# old\nk1:" + secretA + "\n", []string{"k2", "k1"}, secretB},
		{"legacy key kept beside a new one", secretA + "\nnew:" + secretB, []string{"", "new"}, secretA},
		{"colon after a non-kid prefix is part of the secret", "a b:" + secretA, []string{""}, "a b:" + secretA},
		{"secret may hold colons", "k1:" + secretA + ":x", []string{"k1"}, secretA + ":x"},
		{"max keys", keyLines(MaxKeys), ids(MaxKeys), secretA + "0"},
		{"too many keys", keyLines(MaxKeys + 1), nil, ""},
		{"empty", "", nil, ""},
		{"only comments", "# nothing\n\n", nil, ""},
		{"short key", "k1:" + secretA[:31], nil, ""},
		{"short legacy key", "short", nil, ""},
		{"duplicate kid", "k1:" + secretA + "\nk1:" + secretB, nil, ""},
		{"two keys without kid", secretA + "\n" + secretB, nil, ""},
		{"kid too long", strings.Repeat("k", MaxKeyIDLen+1) + ":" + secretA, []string{""}, strings.Repeat("k", MaxKeyIDLen+1) + ":" + secretA},
		{"too large", strings.Repeat("#", MaxKeyFileBytes+1), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, err := ParseKeySet([]byte(c.file))
			if c.ids == nil {
				if err == nil {
					t.Fatalf("accepted: kids %q", ks.IDs())
				}
				if !errors.Is(err, ErrKeySet) {
					t.Fatalf("error %v does not wrap ErrKeySet", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ks.IDs(), c.ids) {
				t.Fatalf("kids %q, want %q", ks.IDs(), c.ids)
			}
			if got := string(ks.Primary().Secret); got != c.primary {
				t.Fatalf("primary secret %q, want %q", got, c.primary)
			}
		})
	}
}

// keyLines returns n lines "kI:<secretA>I" (distinct kids and secrets).
func keyLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d:%s%d\n", i, secretA, i)
	}
	return b.String()
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%d", i)
	}
	return out
}

func mustKeySet(t *testing.T, file string) *KeySet {
	t.Helper()
	ks, err := ParseKeySet([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestVerifyWithKeySets(t *testing.T) {
	signWith := func(file string) string {
		s, err := NewKeySigner(KindUser, mustKeySet(t, file))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Sign("alice", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// withKid signs with secret under an arbitrary kid header value.
	withKid := func(kid any, secret string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Kind: KindUser, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}})
		tok.Header["kid"] = kid
		s, err := tok.SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name     string
		verifier string // key file of the verifier
		token    string
		ok       bool
	}{
		{"old format both sides", secretA, signWith(secretA), true},
		{"kid token, kid selects the second key", "k2:" + secretB + "\nk1:" + secretA, signWith("k1:" + secretA), true},
		{"kid token, primary key", "k2:" + secretB + "\nk1:" + secretA, signWith("k2:" + secretB), true},
		{"no kid, tries each key", "k2:" + secretB + "\nk1:" + secretA, signWith(secretA), true},
		{"no kid, legacy key given a kid later", "k1:" + secretA, signWith(secretA), true},
		{"no kid, key not in set", "k2:" + secretB + "\nk1:" + secretA, signWith(secretC), false},
		{"unknown kid", "k2:" + secretB + "\nk1:" + secretA, signWith("k3:" + secretA), false},
		{"unknown kid, key without kid tried", secretA + "\nk2:" + secretB, signWith("k1:" + secretA), true},
		{"unknown kid, key without kid does not match", secretA + "\nk2:" + secretB, signWith("k1:" + secretC), false},
		{"kid names another key than the signature's", "k2:" + secretB + "\nk1:" + secretA, withKid("k2", secretA), false},
		{"kid not a string", "k1:" + secretA, withKid(7, secretA), false},
		{"dropped key", "k2:" + secretB, signWith("k1:" + secretA), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewKeyVerifier(KindUser, mustKeySet(t, c.verifier))
			if err != nil {
				t.Fatal(err)
			}
			sub, err := v.Verify(c.token)
			if c.ok && (err != nil || sub != "alice") {
				t.Fatalf("refused: %q %v", sub, err)
			}
			if !c.ok && (err == nil || !errors.Is(err, ErrInvalidToken)) {
				t.Fatalf("want ErrInvalidToken, got %q %v", sub, err)
			}
		})
	}
}

func TestSignerKidHeader(t *testing.T) {
	for _, c := range []struct{ file, kid string }{
		{"k2:" + secretB + "\nk1:" + secretA, "k2"},
		{secretA + "\nk1:" + secretB, ""},
	} {
		s, _ := NewKeySigner(KindService, mustKeySet(t, c.file))
		tok, err := s.Sign("crm", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, &Claims{})
		if err != nil {
			t.Fatal(err)
		}
		got, has := parsed.Header["kid"]
		if c.kid == "" && has || c.kid != "" && got != c.kid {
			t.Errorf("%q: kid header %v (present %v), want %q", c.file, got, has, c.kid)
		}
	}
}
