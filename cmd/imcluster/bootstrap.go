package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/server"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "bootstrap",
		Short: "create the Kafka topics (refusing a partition-count mismatch) and migrate the schema; idempotent",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.LoadMessage(os.Getenv)
			if err != nil {
				return err
			}
			return server.Bootstrap(cfg)
		},
	})
}
