//go:build linux

package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

// UpOptions configure Up.
type UpOptions struct {
	// Dir holds the control plane (as localcp's Dir) and, in Dir/node, the
	// node; required.
	Dir string
	// Log receives progress; nil discards it.
	Log io.Writer
	// Detach leaves both running when this process exits.
	Detach bool
	// AuditLog is localcp's option.
	AuditLog bool
	// Images are more OCI image tars to import, after the pause image and
	// the test agent.
	Images []string
}

// Up checks the machine, installs the packages when missing, builds (or
// finds) the control plane, then the kubelet, and the test images meanwhile,
// then starts a local control plane with no kwok node and the real
// node registered to it. On error everything started is stopped.
func Up(ctx context.Context, o UpOptions) (*localcp.Cluster, *Node, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" {
		return nil, nil, errors.New("realnode: UpOptions.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, nil, err
	}
	if err := Preflight(); err != nil {
		return nil, nil, err
	}
	if err := EnsurePackages(ctx, o.Log); err != nil {
		return nil, nil, err
	}
	nodeDir := filepath.Join(dir, "node")
	if err := os.MkdirAll(filepath.Join(nodeDir, "images"), 0o755); err != nil {
		return nil, nil, err
	}
	var (
		wg               sync.WaitGroup
		kubelet, bin     string
		images           TestImages
		kErr, bErr, iErr error
		began            = time.Now()
	)
	// The kubelet after the control plane: they share most of their
	// packages, which the Go build cache then holds (built at the same time,
	// each would compile them).
	wg.Go(func() {
		if bin, bErr = localcp.EnsureBinaries(ctx, o.Log); bErr == nil {
			kubelet, kErr = EnsureKubelet(ctx, o.Log)
		}
	})
	wg.Go(func() { images, iErr = BuildTestImages(ctx, filepath.Join(nodeDir, "images")) })
	wg.Wait()
	if err := errors.Join(kErr, bErr, iErr); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(o.Log, "realnode: kubelet, control plane and test images ready in %s\n", time.Since(began).Round(time.Millisecond))
	flags, err := APIServerFlags(nodeDir)
	if err != nil {
		return nil, nil, err
	}
	cluster, err := localcp.Start(ctx, localcp.Options{
		Dir: dir, NoKwokNodes: true, AuditLog: o.AuditLog, Log: o.Log, BinDir: bin,
		ExtraAPIServerFlags: flags, Detach: o.Detach,
	})
	if err != nil {
		return nil, nil, err
	}
	node, err := Start(ctx, Options{
		Dir: nodeDir, Kubelet: kubelet, Log: o.Log, Detach: o.Detach,
		Images: append([]string{images.Pause, images.Agent}, o.Images...),
	}, cluster)
	if err != nil {
		if o.Detach {
			_ = localcp.StopDir(dir)
		} else {
			_ = cluster.Stop()
		}
		return nil, nil, err
	}
	return cluster, node, nil
}

// ImportImage imports an image tar into the containerd of the node whose
// work directory is nodeDir (Up's Dir/node), for a node started by another
// process.
func ImportImage(ctx context.Context, nodeDir, tar string) error {
	n := &Node{Dir: nodeDir, Socket: filepath.Join(nodeDir, "containerd", "containerd.sock")}
	return n.ImportImage(ctx, tar)
}
