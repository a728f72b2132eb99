package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/route"
)

func init() {
	var role string
	cmd := &cobra.Command{
		Use:   "message",
		Short: "run the message tier (HTTP API and/or log pipeline); configured by IM_* environment variables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadMessage(os.Getenv)
			if err != nil {
				return err
			}
			// A process named explicitly (the pod name) is a static member
			// of the consumer group; a hostname may be shared.
			if cfg.GroupInstanceID == "" && os.Getenv(config.EnvNodeID) != "" {
				cfg.GroupInstanceID = cfg.NodeID
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runMessage(ctx, cfg, role)
		},
	}
	cmd.Flags().StringVar(&role, "role", server.RoleAll, "what to run: all, api (HTTP API only) or pipeline (consumer group only)")
	rootCmd.AddCommand(cmd)
}

func runMessage(ctx context.Context, cfg config.Message, role string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.NodeID, "tier", "message", "role", role)
	opt := server.Options{Role: role, Log: log}
	var etcdCli *clientv3.Client
	var cache *presence.Cache
	// The internal key file is loaded once and followed for key rotation:
	// the router's tokens and the API's verifier of internal calls share it.
	if cfg.InternalKeyFile != "" {
		keys, err := auth.LoadKeyFile(cfg.InternalKeyFile)
		if err != nil {
			return fmt.Errorf("internal key (%s): %w", config.EnvInternalKeyFile, err)
		}
		go keys.Watch(ctx, 0, log)
		opt.InternalKeys = keys
	}

	// Presence and routing. Without an internal key there is no push tier
	// to talk to: the pipeline routes nothing and devices get everything by
	// sync; presence queries still work when etcd answers.
	if len(cfg.EtcdEndpoints) > 0 {
		cli, err := pushEtcdClient(cfg.EtcdEndpoints, cfg.EtcdTLSDir)
		if err != nil {
			return err
		}
		defer cli.Close()
		etcdCli, cache = cli, presence.NewCache(cli, cfg.EtcdPrefix, log)
		go cache.Run(ctx)
		opt.Directory = cache
		opt.PresenceHealth = func() error {
			if stale, since := cache.Stale(); stale {
				return fmt.Errorf("presence cache stale: nothing heard from etcd since %s", since.Format(time.RFC3339))
			}
			return nil
		}
		if opt.InternalKeys != nil && role != server.RoleAPI {
			tokens, err := route.NewKeyTokenSource(opt.InternalKeys, cfg.NodeID)
			if err != nil {
				return err
			}
			// ── The real router is constructed here. ──
			opt.Router = routeAdapter{route.New(route.Options{Directory: cache, Tokens: tokens, Log: log, Registry: prometheus.DefaultRegisterer})}
			opt.RoutingReady = cache.WaitReady
		}
	}
	if opt.Router == nil {
		opt.Router = pipeline.LogRouter{Log: log}
	}
	if err := addWebhooks(cfg, role, etcdCli, cache, log, &opt); err != nil {
		return err
	}
	return server.Run(ctx, cfg, opt)
}

// routeAdapter lets the push tier's router serve as the pipeline's Router.
type routeAdapter struct{ r *route.Router }

func (a routeAdapter) Route(ctx context.Context, batch []pipeline.Routed) error {
	items := make([]route.Item, len(batch))
	for i, b := range batch {
		items[i] = route.Item{Event: b.Event, Users: b.Users, ExceptDevice: b.ExceptDevice}
	}
	return a.r.Deliver(ctx, items)
}

func (a routeAdapter) HintLoggedInSince(ctx context.Context, users []string, since time.Time) {
	a.r.HintLoggedInSince(ctx, users, since, presence.ReasonLateIndex)
}
