//go:build linux

// Command realnode starts and stops a local control plane (hack/localcp)
// with one real node (hack/realnode) instead of kwok's, and imports images
// into that node.
//
//	go run ./hack/realnode/cmd/realnode build                 # the kubelet; print its path
//	go run ./hack/realnode/cmd/realnode up --dir D [--image T]...
//	go run ./hack/realnode/cmd/realnode import --dir D T...   # OCI or docker-archive tars
//	go run ./hack/realnode/cmd/realnode down --dir D          # also cleans up after a killed node
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
	"github.com/sympozium-ai/sympozium-controller/hack/realnode"
)

const defaultDir = ".localcp/realnode"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New(`usage:
  realnode build                          build (or find) the kubelet; print its path
  realnode up [--dir D] [--image T]...    start a control plane and the real node in D, leave them running
  realnode import [--dir D] T...          import image tars into the node of D
  realnode down [--dir D]                 stop both and undo every change to the host
D defaults to ` + defaultDir)
}

type images []string

func (i *images) String() string     { return fmt.Sprint(*i) }
func (i *images) Set(v string) error { *i = append(*i, v); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", defaultDir, "work directory of the cluster and the node")
	switch args[0] {
	case "build":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		bin, err := realnode.EnsureKubelet(ctx, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(bin)
		return nil
	case "up":
		var imgs images
		fs.Var(&imgs, "image", "an image tar to import (repeatable)")
		audit := fs.Bool("audit", false, "write the API server's audit log to D/audit.log")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, n, err := realnode.Up(ctx, realnode.UpOptions{Dir: *dir, Log: os.Stderr, Detach: true, AuditLog: *audit, Images: imgs})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "realnode: running (node %s, logs %s); stop with: go run ./hack/realnode/cmd/realnode down --dir %s\n", realnode.NodeName, n.Dir, c.Dir)
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
		fmt.Printf("export KUBECACHEDIR=%s\n", filepath.Join(c.Dir, "kubectl-cache"))
		return nil
	case "import":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		for _, tar := range fs.Args() {
			if err := realnode.ImportImage(ctx, filepath.Join(*dir, "node"), tar); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "realnode: imported %s\n", tar)
		}
		return nil
	case "down":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		errNode := realnode.Down(ctx, os.Stderr)
		return errors.Join(errNode, localcp.StopDir(*dir))
	default:
		return usage()
	}
}
