package presence

import (
	"fmt"
	"strings"
)

// Key layout under the configured etcd prefix P (config.Common.EtcdPrefix):
//
//	P/push/nodes/<node>                    Node JSON        (node lease)
//	P/push/sessions/<user>/<terminal>      Session JSON     (lease of the node holding it)
//	P/push/kicks/<node>/<user>/<terminal>  {"epoch":N}      (lease of the kicking node)
//	P/push/hints/<node>                    Hint JSON        (lease of the node it is for)
//
// One session key per (user, terminal): a second login on the same terminal
// overwrites the key, and the put's previous value says which session (node,
// epoch) it replaced, so that node can be told to kick it.
type keys struct{ root string }

func newKeys(prefix string) keys {
	return keys{root: strings.TrimRight(prefix, "/") + "/push/"}
}

func (k keys) nodes() string                 { return k.root + "nodes/" }
func (k keys) node(id string) string         { return k.nodes() + id }
func (k keys) sessions() string              { return k.root + "sessions/" }
func (k keys) session(u, t string) string    { return k.sessions() + u + "/" + t }
func (k keys) kicks(node string) string      { return k.root + "kicks/" + node + "/" }
func (k keys) kick(node, u, t string) string { return k.kicks(node) + u + "/" + t }

func (k keys) hint(node string) string { return k.root + "hints/" + node }

// splitTail returns the two path elements after prefix p in key.
func splitTail(key, p string) (string, string, error) {
	if !strings.HasPrefix(key, p) {
		return "", "", fmt.Errorf("key %q is not under %q", key, p)
	}
	a, b, ok := strings.Cut(key[len(p):], "/")
	if !ok || a == "" || b == "" || strings.Contains(b, "/") {
		return "", "", fmt.Errorf("malformed key %q", key)
	}
	return a, b, nil
}

// ValidTerminal reports whether t is an acceptable terminal type:
// 1..32 bytes of [a-z0-9_-].
func ValidTerminal(t string) error {
	if t == "" || len(t) > 32 {
		return fmt.Errorf("terminal must be 1..32 bytes")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return fmt.Errorf("terminal contains %q; allowed: a-z 0-9 _ -", c)
		}
	}
	return nil
}
