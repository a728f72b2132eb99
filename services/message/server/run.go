// Package server assembles the message tier from its parts — API, pipeline,
// store, log — for the imcluster binary and for tests that run the real
// thing as a child process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/tlsconf"
)

// Roles of a message process.
const (
	RoleAll      = "all"
	RoleAPI      = "api"
	RolePipeline = "pipeline"
)

// Options are what the binary decides beyond the configuration.
type Options struct {
	Role      string
	Router    pipeline.Router    // nil: pipeline.NopRouter (devices sync)
	Directory presence.Directory // nil: presence queries answer 503
	Log       *slog.Logger
	// Listening, if set, is called with the bound API/health address.
	Listening func(addr string)
	// Now is the API's clock (nil: time.Now); tests move it.
	Now func() time.Time
	// InternalKeys are the internal-tier keys the caller already loaded
	// from cfg.InternalKeyFile (the binary shares one *auth.KeyFile, which
	// it watches, between the router's tokens and the API's verifier);
	// nil: Run loads and watches the file itself.
	InternalKeys auth.KeySource
	// KeyReloadInterval is how often the key files and the TLS pair Run
	// loads are re-read for rotation (0: auth.DefaultReloadInterval).
	KeyReloadInterval time.Duration
	// RoutingReady, if set, blocks until the router can route (the
	// presence cache has listed the push tier): the pipeline starts only
	// then, so its first batches are not routed against an empty cache
	// (every push skipped, devices waiting for their next sync) — or after
	// RoutingWait at the latest, so an etcd outage at start-up does not
	// also stop storing messages.
	RoutingReady func(ctx context.Context) error
	// RoutingWait bounds the wait for RoutingReady (0: DefaultRoutingWait).
	RoutingWait time.Duration
	// PresenceHealth, if set, reports whether the presence cache is
	// current (nil error) or stale (etcd unheard): shown by /readyz, not
	// gating (sends and storing go on; the router hints devices to sync).
	PresenceHealth func() error
	// Gate, if set, is the API's before_send check (services/webhook).
	Gate api.SendGate
	// Components run beside the tier until it stops (the webhook
	// dispatcher): each is shown on /readyz, not gating.
	Components []Component
}

// Component is an optional part of a message process.
type Component struct {
	Name      string
	WhileDown string // what still works while Health fails
	Run       func(context.Context) error
	Health    func() error // nil: not shown
}

// Run serves until ctx is done, then drains: the HTTP server stops taking
// requests and the pipeline finishes (or hands back) its current batches
// within cfg.ShutdownGrace.
func Run(ctx context.Context, cfg config.Message, opt Options) error {
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	switch opt.Role {
	case RoleAll, RoleAPI, RolePipeline:
	default:
		return fmt.Errorf("role %q: want all, api or pipeline", opt.Role)
	}
	runAPI, runPipeline := opt.Role != RolePipeline, opt.Role != RoleAPI

	admin, err := mlog.NewAdmin(cfg.Kafka, cfg.NodeID+"-admin")
	if err != nil {
		return err
	}
	info, err := admin.CheckTopic(cfg.Topic, cfg.Partitions)
	admin.Close()
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Cassandra, cfg.Topic, int(cfg.Partitions))
	if err != nil {
		return err
	}
	defer st.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err = st.UseFeedRetention(rctx, cfg.FeedRetention)
	rcancel()
	if err != nil {
		return err
	}

	// The API listener serves https when a pair is configured; the pair is
	// followed like the key files (a Secret update needs no restart).
	var apiTLS *tls.Config
	var certFile *tlsconf.CertFile
	if cfg.TLSCertFile != "" {
		if certFile, err = tlsconf.LoadCertFile(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return fmt.Errorf("TLS pair (%s, %s): %w", config.EnvTLSCertFile, config.EnvTLSKeyFile, err)
		}
		apiTLS = tlsconf.ServerConfig(certFile)
	}

	checks := &readiness{}
	var routingReady atomic.Bool
	mux := http.NewServeMux()
	var srv *api.Server
	var keyFiles []*auth.KeyFile // to watch for rotation
	if runAPI {
		authn, files, err := authenticator(cfg, opt.InternalKeys)
		if err != nil {
			return err
		}
		keyFiles = files
		prod, err := mlog.NewProducer(cfg.Kafka, cfg.Topic, cfg.NodeID, api.SendDeadline)
		if err != nil {
			return err
		}
		defer prod.Close()
		srv = &api.Server{Auth: authn, Store: st, Producer: prod, Presence: opt.Directory, Partitions: int(cfg.Partitions),
			MaxMessageBytes: cfg.MaxMessageBytes, RecallWindow: cfg.RecallWindow, Log: log, Now: opt.Now,
			MaxGroupMembers: cfg.MaxGroupMembers, MaxGroupsPerUser: cfg.MaxGroupsPerUser,
			LogEnds: prod} // the producer's client reads the log ends too
		if opt.Gate != nil {
			srv.Gate = opt.Gate
		}
		mux.Handle("/", srv.Handler())
		checks.add("kafka", prod.Ping)
	}
	var cons *pipeline.Consumer
	if runPipeline {
		dlq, err := mlog.NewProducer(cfg.Kafka, cfg.DLQTopic, cfg.NodeID+"-dlq", api.SendDeadline)
		if err != nil {
			return err
		}
		defer dlq.Close()
		router := opt.Router
		if router == nil {
			router = pipeline.NopRouter{}
		}
		cons = &pipeline.Consumer{Kafka: cfg.Kafka, ClientID: cfg.NodeID, InstanceID: cfg.GroupInstanceID, Guard: st,
			Grace: cfg.ShutdownGrace, Log: log,
			Processor: &pipeline.Processor{Store: st, Router: router, DeadLetter: dlq, TopicID: info.ID, Log: log,
				MaxGroupSize: cfg.MaxGroupMembers}}
		// A process that serves the API must not flap with rebalances: it
		// is ready once it joined; a pipeline-only process while it holds
		// a session.
		pipelineUp := cons.Ready
		if runAPI {
			pipelineUp = cons.Joined
		}
		checks.addFlag("pipeline", true, pipelineUp)
		// Gating where it decides what the process is for (a pipeline-only
		// process); reported beside the API, whose sends do not need it.
		checks.addFlag("routing", !runAPI, routingReady.Load)
	}
	// Cassandra is reported but does not gate readiness: sends never
	// touch it, and a pod taken out of its Service during a Cassandra
	// outage would refuse the sends the log could take. Reads answer 503
	// with Retry-After meanwhile.
	checks.report("cassandra", "reads answer 503; sends are taken", st.Ping)
	if opt.PresenceHealth != nil {
		checks.report("presence", "reported, not gating", opt.PresenceHealth)
	}
	for _, c := range opt.Components {
		if c.Health != nil {
			checks.report(c.Name, c.WhileDown, c.Health)
		}
	}
	health := http.NewServeMux()
	health.Handle("/metrics", promhttp.Handler())
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	health.HandleFunc("/readyz", checks.serve)
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, health)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4+len(opt.Components))
	// Key rotation: follow the key files (a Secret update needs no restart).
	for _, f := range keyFiles {
		wg.Add(1)
		go func() { defer wg.Done(); f.Watch(ctx, opt.KeyReloadInterval, log) }()
	}
	if certFile != nil {
		wg.Add(1)
		go func() { defer wg.Done(); certFile.Watch(ctx, opt.KeyReloadInterval, log) }()
	}
	// Dependency checks for /readyz, every readyCheckInterval.
	wg.Add(1)
	go func() { defer wg.Done(); checks.run(ctx) }()
	serve := func(addr string, h http.Handler, announce bool, tc *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("while listening on %s: %w", addr, err)
		}
		if announce && opt.Listening != nil {
			opt.Listening(ln.Addr().String())
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10, TLSConfig: tc}
		wg.Add(2)
		go func() {
			defer wg.Done()
			var err error
			if tc != nil {
				err = hs.ServeTLS(ln, "", "") // certificates from tc.GetCertificate
			} else {
				err = hs.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
			defer c()
			_ = hs.Shutdown(sctx)
		}()
		return nil
	}
	if err := serve(cfg.HTTPAddr, mux, true, apiTLS); err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		if err := serve(cfg.MetricsAddr, health, false, nil); err != nil { // in-cluster: plain
			return err
		}
	}
	if cons != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitForRouting(ctx, opt, &routingReady, log)
			if ctx.Err() != nil {
				return
			}
			if err := cons.Run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	for _, c := range opt.Components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", c.Name, err)
			}
		}()
	}
	log.Info("message tier running", "addr", cfg.HTTPAddr, "tls", apiTLS != nil, "topic", cfg.Topic, "topic_id", info.ID,
		"partitions", cfg.Partitions, "keyspace", cfg.Keyspace)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		log.Error("message tier failing", "err", runErr)
	}
	cancel()
	wg.Wait()
	return runErr
}

// DefaultRoutingWait is how long the pipeline waits for its router at
// start-up before it stores messages anyway.
const DefaultRoutingWait = 30 * time.Second

// waitForRouting returns once opt.RoutingReady succeeded (setting ready),
// RoutingWait passed, or ctx ended. ready is set whenever the router
// becomes ready, also later.
func waitForRouting(ctx context.Context, opt Options, ready *atomic.Bool, log *slog.Logger) {
	if opt.RoutingReady == nil {
		ready.Store(true)
		return
	}
	done := make(chan struct{})
	go func() {
		if opt.RoutingReady(ctx) == nil {
			ready.Store(true)
		}
		close(done)
	}()
	wait := opt.RoutingWait
	if wait <= 0 {
		wait = DefaultRoutingWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
		log.Warn("presence not listed yet; the pipeline starts storing anyway and pushes only once it lists (devices sync meanwhile)", "waited", wait)
	}
}

// authenticator builds the API's verifiers on the key files of cfg and
// returns the files it loaded, for the caller to watch. internal, when not
// nil, holds the keys of cfg.InternalKeyFile the caller already loaded.
func authenticator(cfg config.Message, internal auth.KeySource) (*auth.Authenticator, []*auth.KeyFile, error) {
	a := &auth.Authenticator{}
	var files []*auth.KeyFile
	load := func(kind auth.Kind, file, env string) (*auth.Verifier, error) {
		f, err := auth.LoadKeyFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s key (%s): %w", kind, env, err)
		}
		files = append(files, f)
		return auth.NewKeyVerifier(kind, f)
	}
	var err error
	if a.User, err = load(auth.KindUser, cfg.UserKeyFile, config.EnvUserKeyFile); err != nil {
		return nil, nil, err
	}
	if cfg.ServiceKeyFile != "" {
		if a.Service, err = load(auth.KindService, cfg.ServiceKeyFile, config.EnvServiceKeyFile); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case internal != nil:
		if a.Internal, err = auth.NewKeyVerifier(auth.KindInternal, internal); err != nil {
			return nil, nil, fmt.Errorf("%s key (%s): %w", auth.KindInternal, config.EnvInternalKeyFile, err)
		}
	case cfg.InternalKeyFile != "":
		if a.Internal, err = load(auth.KindInternal, cfg.InternalKeyFile, config.EnvInternalKeyFile); err != nil {
			return nil, nil, err
		}
	}
	return a, files, nil
}

// Bootstrap creates the topics (refusing a partition-count mismatch) and
// migrates the schema. Idempotent.
func Bootstrap(cfg config.Message) error {
	if err := mlog.Bootstrap(cfg.Kafka, cfg.NodeID+"-bootstrap"); err != nil {
		return err
	}
	return store.Migrate(cfg.Cassandra)
}
