package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/store"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "create the Cassandra keyspace if needed and apply every schema migration (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.LoadMessage(os.Getenv)
			if err != nil {
				return err
			}
			return store.Migrate(cfg.Cassandra)
		},
	})
}
