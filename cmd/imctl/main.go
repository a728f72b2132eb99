// Command imctl is the imcluster command-line tool: mint a token for local
// use, send, listen as a user/device, history, unread, read, recall,
// bench (load through the real API and push tier) and web (the web chat
// page, cmd/imctl/web.go).
package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/tlsconf"
)

var g struct {
	api        string
	push       string
	userKey    string
	serviceKey string
	token      string
	caFile     string
	tls        *tls.Config // from caFile; nil: the system roots
}

var rootCmd = &cobra.Command{
	Use:           "imctl",
	Short:         "imcluster command-line tool",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&g.api, "api", envOr("IMCTL_API", "http://127.0.0.1:8080"), "message API base URL (env IMCTL_API)")
	pf.StringVar(&g.push, "push", envOr("IMCTL_PUSH", "ws://127.0.0.1:8081/"), "push node WebSocket URLs, comma-separated (env IMCTL_PUSH)")
	pf.StringVar(&g.userKey, "user-key-file", envOr(config.EnvUserKeyFile, ""), "HMAC key file for user tokens (env "+config.EnvUserKeyFile+")")
	pf.StringVar(&g.serviceKey, "service-key-file", envOr(config.EnvServiceKeyFile, ""), "HMAC key file for service tokens (env "+config.EnvServiceKeyFile+")")
	pf.StringVar(&g.token, "token", "", "use this bearer token instead of minting one")
	pf.StringVar(&g.caFile, "ca-file", envOr("IMCTL_CA_FILE", ""),
		"PEM CA bundle to trust, beside the system roots, for https:// and wss:// URLs (env IMCTL_CA_FILE)")
	rootCmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.caFile == "" {
			return nil
		}
		cfg, err := tlsconf.ClientConfig(g.caFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		g.tls = cfg
		return nil
	}
}

// apiHTTP is the HTTP client of API calls: nil (the package default)
// unless --ca-file is set.
func apiHTTP() *http.Client {
	if g.tls == nil {
		return nil
	}
	return sdk.HTTPClient(g.tls)
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "imctl:", err)
		os.Exit(1)
	}
}

func pushURLs() []string {
	var out []string
	for _, u := range strings.Split(g.push, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// mint signs a token of kind for subject with the primary key in keyFile.
func mint(kind auth.Kind, keyFile, subject string, ttl time.Duration) (string, error) {
	s, err := fileSigner(kind, keyFile)
	if err != nil {
		return "", err
	}
	return s.Sign(subject, ttl)
}

// fileSigner returns a signer of kind with the primary (first) key of
// keyFile, in the servers' key file format (several keys for rotation;
// the token names the key's kid).
func fileSigner(kind auth.Kind, keyFile string) (*auth.Signer, error) {
	keys, err := auth.LoadKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w (set --%s-key-file)", kind, err, kind)
	}
	return auth.NewKeySigner(kind, keys)
}

// userToken returns --token or a fresh user token for user.
func userToken(user string) (string, error) {
	if g.token != "" {
		return g.token, nil
	}
	if user == "" {
		return "", fmt.Errorf("--as USER is required")
	}
	return mint(auth.KindUser, g.userKey, user, 24*time.Hour)
}
