// Package realnode runs one real Kubernetes node beside the local control
// plane of hack/localcp: containerd (Debian's package) and a kubelet built
// from the pinned k8s.io/kubernetes module, registered as node realnode-0,
// its pods on a bridge of their own (rncni0, 10.244.77.0/24) and wired to the
// API server. The README (section "A real node") says what it needs, what it
// changes on the host and how a user imports an image or reaches a server
// of the host from a pod.
//
//	cluster, node, err := realnode.Up(ctx, realnode.UpOptions{Dir: dir, Log: os.Stderr})
//	defer cluster.Stop()
//	defer node.Stop()
//	node.ImportImage(ctx, "bin/sympozium-controller.oci.tar")
//
// One real node per machine: a lock (LockFile) is held while it runs, and
// whoever starts the next one waits for it. Everything the node changes on
// the host (processes, mounts, cgroups, iptables rules and chains, the
// bridge, network namespaces, system directories, sysctls) is recorded in
// StateDir before it is changed; Stop undoes it, and so does the next Start
// when the one before was killed.
package realnode
