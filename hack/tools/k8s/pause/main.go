// Command pause is the sandbox ("pause") container of the local real node
// (hack/cluster.sh): containerd's CRI plugin needs an image to hold each
// pod's namespaces, and no registry is reachable to pull k8s' own. It blocks
// until SIGTERM or SIGINT and exits 0. Built static, packaged FROM scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
