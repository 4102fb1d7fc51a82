// Command localcp builds, starts and stops the local test control plane of
// package hack/localcp.
//
//	go run ./hack/localcp/cmd/localcp build                  # print the bin directory
//	go run ./hack/localcp/cmd/localcp up --dir D [--nodes N] [--audit]
//	eval "$(go run ./hack/localcp/cmd/localcp env --dir D)"
//	go run ./hack/localcp/cmd/localcp down --dir D
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

const defaultDir = ".localcp"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "localcp:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New(`usage:
  localcp build                               build (or find) the binaries; print their directory
  localcp up [--dir D] [--nodes N] [--audit]  start a cluster in D and leave it running
  localcp env [--dir D]                       print shell exports for the cluster in D
  localcp down [--dir D]                      stop the cluster in D
D defaults to ` + defaultDir)
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", defaultDir, "work directory of the cluster")
	switch args[0] {
	case "build":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		bin, err := localcp.EnsureBinaries(ctx, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(bin)
		return nil

	case "up":
		nodes := fs.Int("nodes", 1, "number of kwok fake nodes")
		audit := fs.Bool("audit", false, "write the apiserver audit log (Metadata level, JSON) to D/audit.log")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, err := localcp.Start(ctx, localcp.Options{
			Dir:      *dir,
			Nodes:    *nodes,
			AuditLog: *audit,
			Log:      os.Stderr,
			Detach:   true,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "localcp: running; stop with: go run ./hack/localcp/cmd/localcp down --dir %s\n", c.Dir)
		printEnv(c)
		return nil

	case "env":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, err := localcp.LoadState(*dir)
		if err != nil {
			return fmt.Errorf("no cluster in %s: %w", *dir, err)
		}
		printEnv(c)
		return nil

	case "down":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return localcp.StopDir(*dir)

	default:
		return usage()
	}
}

func printEnv(c *localcp.Cluster) {
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	// kubectl caches discovery under ~/.kube unless told otherwise.
	fmt.Printf("export KUBECACHEDIR=%s\n", filepath.Join(c.Dir, "kubectl-cache"))
}
