// Command agentsandbox runs the real agent-sandbox controller against a
// cluster, as the end-to-end tests do: it builds it from the pinned module
// (cached), installs the CRDs that module ships (conversion: None) and runs
// the controller in the foreground until interrupted.
//
//	go run ./hack/agentsandbox/cmd/agentsandbox --kubeconfig K [--log FILE]
//	go run ./hack/agentsandbox/cmd/agentsandbox --build        # print the binary's path
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/sympozium-ai/sympozium-controller/hack/agentsandbox"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "agentsandbox:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster (cluster-admin rights)")
	logFile := flag.String("log", "", "the controller's log file (default: a new temporary file)")
	buildOnly := flag.Bool("build", false, "only build (or find) the binary and print its path")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := agentsandbox.EnsureBinary(ctx, os.Stderr)
	if err != nil {
		return err
	}
	if *buildOnly {
		fmt.Println(bin)
		return nil
	}
	if *kubeconfig == "" {
		return fmt.Errorf("--kubeconfig (or $KUBECONFIG) is required")
	}
	if abs, err := filepath.Abs(*kubeconfig); err == nil {
		*kubeconfig = abs
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	dir, err := agentsandbox.ModuleDir(ctx)
	if err != nil {
		return err
	}
	if err := agentsandbox.InstallCRDs(ctx, cfg, dir); err != nil {
		return err
	}
	if *logFile == "" {
		f, err := os.CreateTemp("", "agent-sandbox-controller-*.log")
		if err != nil {
			return err
		}
		*logFile = f.Name()
		f.Close()
	}
	c, err := agentsandbox.Start(agentsandbox.Options{Binary: bin, Kubeconfig: *kubeconfig, LogFile: *logFile})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "agentsandbox: CRDs from %s installed; controller running, log %s (Ctrl-C stops it)\n", dir, *logFile)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.Stop(15 * time.Second)
		case <-ticker.C:
			if exited, err := c.Exited(); exited {
				return fmt.Errorf("the controller exited (%v); log:\n%s", err, c.LogTail(40))
			}
		}
	}
}
