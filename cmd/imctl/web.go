package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/web"
)

// webConfig is the page's /config.json: where the message API (proxied
// under /api/, same origin: the message tier sends no CORS headers) and
// the push nodes are, and whether /dev/token hands out tokens.
type webConfig struct {
	API       string   `json:"api"`
	Push      []string `json:"push"`
	DevTokens bool     `json:"devTokens"`
}

var userIDRe = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

func init() {
	var listen string
	var devTokens bool
	var devTTL time.Duration
	cmd := &cobra.Command{
		Use:   "web",
		Short: "serve the web chat page (embedded), a proxy to the message API and, with --dev-tokens, dev user tokens",
		Long: `Serves the web chat page (web/, embedded in imctl) on --listen. The page
talks to the push nodes of --push directly (WebSocket) and to the message API
through this server (/api/ proxies to --api, so the page needs no CORS).

--dev-tokens lets anyone who reaches this server get a user token for any
user (GET /dev/token?user=U, minted with --user-key-file): for local
development only (make dev), never on a shared network.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			h, err := webHandler(devTokens, devTTL)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("while listening on %s: %w", listen, err)
			}
			fmt.Fprintf(os.Stderr, "web chat page on http://%s/ (api %s, push %s, dev tokens %v)\n",
				ln.Addr(), g.api, strings.Join(pushURLs(), ","), devTokens)
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the page on")
	f.BoolVar(&devTokens, "dev-tokens", false, "serve GET /dev/token?user=U (user tokens for anyone: local development only)")
	f.DurationVar(&devTTL, "dev-token-ttl", time.Hour, "lifetime of a dev token (the page refreshes it before it expires)")
	rootCmd.AddCommand(cmd)
}

// webHandler serves the embedded page, /config.json, the API proxy under
// /api/ and, when devTokens is set, /dev/token.
func webHandler(devTokens bool, devTTL time.Duration) (http.Handler, error) {
	target, err := url.Parse(g.api)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") {
		return nil, fmt.Errorf("--api %q: want an http:// or https:// URL", g.api)
	}
	var signer *auth.Signer
	if devTokens {
		if signer, err = fileSigner(auth.KindUser, g.userKey); err != nil {
			return nil, fmt.Errorf("--dev-tokens: %w", err)
		}
	}
	cfg, err := json.Marshal(webConfig{API: "api/", Push: pushURLs(), DevTokens: devTokens})
	if err != nil {
		return nil, err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + strings.TrimPrefix(r.In.URL.Path, "/api")
			r.Out.URL.RawPath = ""
		},
	}
	if hc := apiHTTP(); hc != nil {
		proxy.Transport = hc.Transport
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(web.Files()))
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(cfg)
	})
	mux.Handle("/api/", proxy)
	mux.HandleFunc("GET /dev/token", func(w http.ResponseWriter, r *http.Request) {
		if signer == nil {
			http.Error(w, "dev tokens are off (imctl web --dev-tokens)", http.StatusNotFound)
			return
		}
		user := r.URL.Query().Get("user")
		if !userIDRe.MatchString(user) {
			http.Error(w, "user: 1-64 of A-Za-z0-9_.@-", http.StatusBadRequest)
			return
		}
		tok, err := signer.Sign(user, devTTL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(tok))
	})
	return mux, nil
}
