package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
)

func init() {
	var kind, keyFile string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token SUBJECT",
		Short: "mint a token for local use (user, service or internal)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			k := auth.Kind(kind)
			if keyFile == "" {
				switch k {
				case auth.KindUser:
					keyFile = g.userKey
				case auth.KindService:
					keyFile = g.serviceKey
				case auth.KindInternal:
					keyFile = envOr(config.EnvInternalKeyFile, "")
				default:
					return fmt.Errorf("--kind must be user, service or internal")
				}
			}
			tok, err := mint(k, keyFile, args[0], ttl)
			if err != nil {
				return err
			}
			fmt.Println(tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "user", "user, service or internal")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "HMAC key file (default: the key file flag of the kind)")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "validity")
	rootCmd.AddCommand(cmd)
}
