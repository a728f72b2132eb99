package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
	"github.com/imcluster/imcluster/services/tlsconf"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "push",
		Short: "run a push node (WebSocket gateway); configured by IM_* environment variables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadPush(os.Getenv)
			if err != nil {
				return err
			}
			return runPush(cmd.Context(), cfg)
		},
	})
}

// pushEtcdClient connects to etcd, with TLS from dir (ca.crt, tls.crt,
// tls.key) when dir is set.
func pushEtcdClient(endpoints []string, dir string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		DialOptions: presence.DialOptions()} // reconnect within ~1 s of etcd being back
	if dir != "" {
		ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			return nil, fmt.Errorf("while reading the etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err == nil {
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("while connecting to etcd %v: %w", endpoints, err)
	}
	return cli, nil
}

// pushAdvertise returns how message pods reach this node's internal listener.
func pushAdvertise(cfg config.Push, ln net.Listener) string {
	if cfg.AdvertiseURL != "" {
		return strings.TrimRight(cfg.AdvertiseURL, "/")
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Bounds of the push node's HTTP listeners (internal delivery endpoint,
// metrics and health). A delivery call must be answered within the message
// tier's 5 s client timeout anyway; its body is bounded separately
// (services/push: 32 MiB). IdleTimeout is longer than the routers' 90 s
// idle-connection timeout, so the server is not the side that closes a
// connection a router is about to reuse.
const (
	pushReadHeaderTimeout = 5 * time.Second
	pushReadTimeout       = 15 * time.Second
	pushWriteTimeout      = 15 * time.Second
	pushIdleTimeout       = 2 * time.Minute
	pushMaxHeaderBytes    = 16 << 10
)

// pushHTTPServer returns an http.Server for h with every read, write and
// header bound set: a peer that trickles headers or a body, never reads the
// answer, or holds idle connections open cannot pin a goroutine forever.
func pushHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: pushReadHeaderTimeout, ReadTimeout: pushReadTimeout,
		WriteTimeout: pushWriteTimeout, IdleTimeout: pushIdleTimeout, MaxHeaderBytes: pushMaxHeaderBytes}
}

func runPush(ctx context.Context, cfg config.Push) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.NodeID, "tier", "push")
	if ctx == nil {
		ctx = context.Background()
	}
	if cfg.InternalAddr == "" {
		return errors.New(config.EnvInternalAddr + " is required for a push node (delivery endpoint)")
	}
	// Key files are followed for rotation: a Secret update needs no restart.
	userKeys, err := auth.LoadKeyFile(cfg.UserKeyFile)
	if err != nil {
		return fmt.Errorf("user key (%s): %w", config.EnvUserKeyFile, err)
	}
	internalKeys, err := auth.LoadKeyFile(cfg.InternalKeyFile)
	if err != nil {
		return fmt.Errorf("internal key (%s): %w", config.EnvInternalKeyFile, err)
	}
	go userKeys.Watch(ctx, 0, log)
	go internalKeys.Watch(ctx, 0, log)
	users, err := auth.NewKeyVerifier(auth.KindUser, userKeys)
	if err != nil {
		return err
	}
	internal, err := auth.NewKeyVerifier(auth.KindInternal, internalKeys)
	if err != nil {
		return err
	}
	tokens, err := route.NewKeyTokenSource(internalKeys, cfg.NodeID)
	if err != nil {
		return err
	}

	// https:// calls to the message tier trust the system roots plus
	// IM_TLS_CA_FILE; the WebSocket listener serves wss:// with the
	// followed IM_TLS_CERT_FILE/IM_TLS_KEY_FILE pair.
	messageTLS, err := tlsconf.ClientConfig(cfg.TLSCAFile)
	if err != nil {
		return fmt.Errorf("CA file (%s): %w", config.EnvTLSCAFile, err)
	}
	var serverTLS *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tlsconf.LoadCertFile(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("TLS pair (%s, %s): %w", config.EnvTLSCertFile, config.EnvTLSKeyFile, err)
		}
		go cert.Watch(ctx, 0, log)
		serverTLS = tlsconf.ServerConfig(cert)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := push.New(push.Options{
		NodeID: cfg.NodeID, Users: users, Internal: internal, InternalTokens: tokens,
		MessageURL: strings.TrimRight(cfg.MessageURL, "/"), MessageTLS: messageTLS, MaxConnections: cfg.MaxConnections,
		Heartbeat: cfg.HeartbeatInterval, SendQueue: cfg.SendQueue, Log: log, Registry: reg,
	})
	if err != nil {
		return err
	}

	wsLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("while listening on %s: %w", cfg.HTTPAddr, err)
	}
	if serverTLS != nil {
		wsLn = tls.NewListener(wsLn, serverTLS)
	}
	inLn, err := net.Listen("tcp", cfg.InternalAddr)
	if err != nil {
		return fmt.Errorf("while listening on %s: %w", cfg.InternalAddr, err)
	}
	var ready atomic.Bool
	var registrar *presence.Registrar
	health := http.NewServeMux()
	health.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		// Without a current lease, logins fail and routers may not see
		// this node's sessions: not ready until the registration is back
		// (the registrar re-registers on its own once etcd answers).
		if !registrar.Healthy() {
			http.Error(w, "not ready: presence lease not current (etcd unreachable?)\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	inMux := http.NewServeMux()
	inMux.Handle("/internal/", srv.InternalHandler())
	if cfg.MetricsAddr == "" { // no metrics listener: serve them beside the delivery endpoint
		inMux.Handle("/", health)
	}
	inSrv := pushHTTPServer(inMux)
	go func() { _ = inSrv.Serve(inLn) }()

	var metSrv *http.Server
	if cfg.MetricsAddr != "" {
		mux := health
		metLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("while listening on %s: %w", cfg.MetricsAddr, err)
		}
		metSrv = pushHTTPServer(mux)
		go func() { _ = metSrv.Serve(metLn) }()
	}

	etcd, err := pushEtcdClient(cfg.EtcdEndpoints, cfg.EtcdTLSDir)
	if err != nil {
		return err
	}
	defer etcd.Close()
	node := presence.Node{ID: cfg.NodeID, DeliverURL: pushAdvertise(cfg, inLn)}
	registrar = presence.NewRegistrar(etcd, cfg.EtcdPrefix, node, cfg.PresenceLeaseTTL, srv.Kick, log)
	registrar.OnResync(srv.Resync) // lease lost, or a router skipped a batch: devices sync
	reg.MustRegister(registrar.Collectors()...)
	srv.SetPresence(registrar)
	// Etcd down at start-up: keep trying (not ready meanwhile) rather than
	// exit, so the node comes up on its own once etcd answers.
	for backoff := time.Second; ; backoff = min(2*backoff, 5*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = registrar.Start(sctx)
		cancel()
		if err == nil {
			break
		}
		log.Warn("presence registration failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(wsLn) }()
	ready.Store(true)
	log.Info("push node ready", "ws", wsLn.Addr().String(), "tls", serverTLS != nil, "internal", node.DeliverURL, "etcd_prefix", cfg.EtcdPrefix)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Info("signal received; draining", "signal", s.String(), "grace", cfg.ShutdownGrace)
	case err := <-serveErr:
		if err != nil {
			log.Error("accept loop failed", "err", err)
		}
	case <-ctx.Done():
	}
	signal.Stop(sig)

	// Drain: not ready, no new connections, out of the registry (message
	// pods stop routing here; devices sync after reconnecting), connections
	// closed spread over a third of the grace, then the lease is revoked.
	ready.Store(false)
	start := time.Now()
	grace := cfg.ShutdownGrace
	dctx, dcancel := context.WithTimeout(context.Background(), max(grace-2*time.Second, grace*3/4))
	defer dcancel()
	if err := registrar.Deregister(dctx); err != nil {
		log.Warn("deregistration failed", "err", err)
	}
	srv.Drain(dctx, min(grace/3, 10*time.Second))
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	if err := registrar.Close(cctx); err != nil {
		log.Warn("lease revoke failed", "err", err)
	}
	_ = inSrv.Shutdown(cctx)
	srv.Close()
	if metSrv != nil {
		_ = metSrv.Shutdown(cctx)
	}
	log.Info("push node stopped", "drain", time.Since(start).Round(time.Millisecond).String())
	return nil
}
