// Command imcluster is the one server binary of the IM tiers. Subcommands:
// message (API + pipeline), push (WebSocket gateway), migrate (Cassandra
// schema), bootstrap (Kafka topics + schema, run by the operator's Job).
// Each subcommand registers itself from its own file's init.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:           "imcluster",
	Short:         "imcluster server: message and push tiers",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "imcluster:", err)
		os.Exit(1)
	}
}
