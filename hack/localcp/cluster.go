// Package localcp runs a real, local Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler v1.37.2, plus kwok
// for fake nodes whose pods follow the Stages in stages.yaml. The binaries are
// built from pinned Go modules by build.sh (see EnsureBinaries); everything
// listens on 127.0.0.1 only.
//
//	c, err := localcp.Start(ctx, localcp.Options{Dir: t.TempDir()})
//	...
//	defer c.Stop()
//	client := kubernetes.NewForConfigOrDie(c.RestConfig())
package localcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// Options configure Start.
type Options struct {
	// Dir is the work directory: certificates, kubeconfigs, etcd data, logs
	// (<component>.log), pids. Empty means a new temporary directory, removed by
	// Stop.
	Dir string
	// Nodes is the number of kwok fake nodes; 0 means 1.
	Nodes int
	// NoKwokNodes registers no kwok node (Nodes is ignored): for a cluster
	// whose pods run on a real node (hack/realnode). kwok still runs.
	NoKwokNodes bool
	// AuditLog makes kube-apiserver log every request at Metadata level, as JSON
	// lines, to Dir/audit.log.
	AuditLog bool
	// Log receives progress messages; nil discards them.
	Log io.Writer
	// ExtraAPIServerFlags are appended to the kube-apiserver command line (a
	// later flag wins over an earlier one).
	ExtraAPIServerFlags []string
	// BinDir holds the binaries; empty means EnsureBinaries.
	BinDir string
	// Detach leaves the components running when the calling process exits (no
	// parent-death signal). `localcp up` uses it; tests should not.
	Detach bool
}

// Cluster is a running control plane.
type Cluster struct {
	// Dir is the work directory.
	Dir string `json:"dir"`
	// Kubeconfig is Dir/kubeconfig, for the admin user.
	Kubeconfig string `json:"kubeconfig"`
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string `json:"apiServerURL"`
	// Host is APIServerURL (the name rest.Config uses).
	Host string `json:"host"`
	// CAFile is the cluster CA certificate; CAData is its PEM content.
	CAFile string `json:"caFile"`
	CAData []byte `json:"-"`
	// AdminToken is a bearer token of user "admin" in group system:masters.
	AdminToken string `json:"adminToken"`
	// Nodes are the names of the kwok nodes.
	Nodes []string `json:"nodes"`
	// StartupDuration is how long Start took, binaries excluded.
	StartupDuration time.Duration `json:"startupDuration"`

	log     io.Writer
	ownsDir bool
	procs   []*process
	mu      sync.Mutex
	stopped bool
}

// Well-known names.
const (
	// NodeAnnotation marks the nodes kwok manages.
	NodeAnnotation = "kwok.x-k8s.io/node"
	stateFile      = "cluster.json"
	auditLogFile   = "audit.log"
	adminUser      = "admin"
)

// Start starts a control plane and returns once every component is healthy,
// the nodes are Ready and schedulable and the default ServiceAccount exists.
// On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	switch {
	case opts.NoKwokNodes:
		opts.Nodes = 0
	case opts.Nodes <= 0:
		opts.Nodes = 1
	}
	if opts.BinDir == "" {
		bin, err := EnsureBinaries(ctx, opts.Log)
		if err != nil {
			return nil, err
		}
		opts.BinDir = bin
	} else if err := checkBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	// The ports are picked free but released before the components bind them:
	// another process may take one in between. Start again on fresh ports then.
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, opts)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return c, err
		}
		fmt.Fprintf(opts.Log, "localcp: a port was taken, starting again (attempt %d)\n", attempt+1)
	}
}

func start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	binDir := opts.BinDir
	began := time.Now()
	c := &Cluster{log: opts.Log}
	if opts.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "localcp-"); err != nil {
			return nil, err
		}
		c.ownsDir = true
	} else {
		if c.Dir, err = filepath.Abs(opts.Dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return nil, err
		}
		if err := refuseRunning(c.Dir); err != nil {
			return nil, err
		}
		// Stale state from an earlier run in the same directory.
		for _, name := range []string{"etcd", pidsFile, stateFile, auditLogFile} {
			if err := os.RemoveAll(filepath.Join(c.Dir, name)); err != nil {
				return nil, err
			}
		}
	}
	defer func() {
		if err != nil {
			c.logf("start failed: %v; logs in %s", err, c.Dir)
			_ = c.Stop()
		}
	}()

	l, err := newLayout(c.Dir, binDir, opts)
	if err != nil {
		return nil, err
	}
	c.APIServerURL = l.apiserverURL
	c.Host = l.apiserverURL
	c.CAFile = l.pki.CACert
	c.CAData = l.pki.caPEM
	c.AdminToken = l.tokens[adminUser]
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.APIServerURL, c.CAData, adminUser, c.AdminToken); err != nil {
		return nil, err
	}
	c.logf("prepared certificates and configuration in %s", since(began))

	hc, err := c.healthClient()
	if err != nil {
		return nil, err
	}

	// etcd, then kube-apiserver: each needs the one before.
	etcd, err := c.startComponent(l.etcd())
	if err != nil {
		return nil, err
	}
	if err := c.waitHealthy(ctx, hc, etcd, l.etcdURL+"/health", "", 30*time.Second); err != nil {
		return nil, err
	}
	apiserver, err := c.startComponent(l.apiserver())
	if err != nil {
		return nil, err
	}
	if err := c.waitHealthy(ctx, hc, apiserver, l.apiserverURL+"/readyz", c.AdminToken, 60*time.Second); err != nil {
		return nil, err
	}

	// The rest in parallel; the nodes are created at once and kwok picks them up.
	client, err := newClient(c.RestConfig())
	if err != nil {
		return nil, err
	}
	if c.Nodes, err = createNodes(ctx, client, opts.Nodes); err != nil {
		return nil, err
	}
	type check struct {
		p          *process
		url, token string
	}
	var checks []check
	for _, comp := range []component{l.controllerManager(), l.scheduler(), l.kwok()} {
		p, err := c.startComponent(comp)
		if err != nil {
			return nil, err
		}
		checks = append(checks, check{p, comp.healthURL, ""})
	}
	errs := make(chan error, len(checks)+2)
	for _, ch := range checks {
		go func() { errs <- c.waitHealthy(ctx, hc, ch.p, ch.url, ch.token, 60*time.Second) }()
	}
	go func() { errs <- c.explainWait(waitNodesReady(ctx, client, c.Nodes, 60*time.Second)) }()
	go func() {
		errs <- c.explainWait(waitServiceAccount(ctx, client, "default", "default", 60*time.Second))
	}()
	var all []error
	for range len(checks) + 2 {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return nil, err
	}

	c.StartupDuration = time.Since(began)
	if err := c.saveState(); err != nil {
		return nil, err
	}
	c.logf("cluster ready in %s: %s, %d node(s), kubeconfig %s", c.StartupDuration.Round(time.Millisecond), c.APIServerURL, len(c.Nodes), c.Kubeconfig)
	return c, nil
}

// explainWait returns err, with the log of any component that has exited (the
// usual reason for a wait to time out).
func (c *Cluster) explainWait(err error) error {
	if err == nil {
		return nil
	}
	for _, p := range c.procs {
		if p.exited() {
			return fmt.Errorf("%w; %s exited early:\n%s", err, p.name, p.logTail(20))
		}
	}
	return err
}

// RestConfig returns a client configuration for the admin user (system:masters).
// QPS and Burst are raised for tests that create many objects.
func (c *Cluster) RestConfig() *rest.Config {
	return c.RestConfigForToken(c.AdminToken)
}

// RestConfigForToken returns a client configuration that authenticates with a
// bearer token, e.g. one from `kubectl create token` or the TokenRequest API.
func (c *Cluster) RestConfigForToken(token string) *rest.Config {
	return &rest.Config{
		Host:            c.APIServerURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), c.CAData...)},
		QPS:             200,
		Burst:           400,
	}
}

// AuditLogPath returns Dir/audit.log. It is written only with Options.AuditLog.
func (c *Cluster) AuditLogPath() string { return filepath.Join(c.Dir, auditLogFile) }

// LogPath returns the log file of a component ("etcd", "kube-apiserver",
// "kube-controller-manager", "kube-scheduler", "kwok").
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.Dir, component+".log")
}

// PIDs returns the process id of each component.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		m[p.name] = p.pid
	}
	return m
}

// Stop stops every component (SIGTERM, then SIGKILL after a few seconds) and
// waits for them to exit: first kwok, the scheduler and the controller-manager,
// then kube-apiserver, then etcd. A temporary Dir is removed.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	began := time.Now()
	err := stopProcesses(c.procs)
	if err == nil {
		_ = os.Remove(filepath.Join(c.Dir, pidsFile))
	}
	c.logf("stopped in %s", since(began))
	if c.ownsDir && err == nil {
		err = os.RemoveAll(c.Dir)
	}
	return err
}

// stopProcesses stops procs (in start order) in three waves, last started first.
func stopProcesses(procs []*process) error {
	waves := [][]string{{"kwok", "kube-scheduler", "kube-controller-manager"}, {"kube-apiserver"}, {"etcd"}}
	var errs []error
	var mu sync.Mutex
	stopped := map[*process]bool{}
	for i, wave := range waves {
		var wg sync.WaitGroup
		for _, p := range procs {
			inWave := i == len(waves)-1 // anything unknown goes last
			for _, name := range wave {
				inWave = inWave || p.name == name
			}
			if !inWave || stopped[p] {
				continue
			}
			stopped[p] = true
			wg.Go(func() {
				if err := p.stop(5 * time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// StopDir stops the cluster whose pids file is in dir (one started by
// `localcp up`). Processes whose command line no longer mentions dir are left
// alone: their PIDs were reused.
func StopDir(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	procs, err := readPIDs(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // nothing running
		}
		return err
	}
	var ours []*process
	for _, p := range procs {
		if pidAlive(p.pid) && pidCmdlineContains(p.pid, dir) {
			ours = append(ours, p)
		}
	}
	if err := stopProcesses(ours); err != nil {
		return err
	}
	// They were orphans: init reaps them. Give it a moment so that a pgrep run
	// right after `down` does not list zombies.
	deadline := time.Now().Add(3 * time.Second)
	for _, p := range ours {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.pid)); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return os.Remove(filepath.Join(dir, pidsFile))
}

// refuseRunning fails when dir holds a cluster that is still running.
func refuseRunning(dir string) error {
	procs, err := readPIDs(dir)
	if err != nil {
		return nil
	}
	for _, p := range procs {
		if pidAlive(p.pid) && pidCmdlineContains(p.pid, dir) {
			return fmt.Errorf("a cluster is already running in %s (%s pid %d); stop it first (localcp down --dir %s)", dir, p.name, p.pid, dir)
		}
	}
	return nil
}

// LoadState reads the cluster description written to dir by Start, for a
// cluster started by another process (`localcp up`). Stop on the result does
// nothing; use StopDir.
func LoadState(dir string) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	c := &Cluster{log: io.Discard, stopped: true}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	if c.CAData, err = os.ReadFile(c.CAFile); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) saveState() error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, stateFile), append(data, '\n'), 0o600)
}

func (c *Cluster) startComponent(comp component) (*process, error) {
	p, err := startProcess(c.Dir, comp.name, comp.binary, comp.args, comp.env, comp.detach)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	procs := append([]*process(nil), c.procs...)
	c.mu.Unlock()
	if err := writePIDs(c.Dir, procs); err != nil {
		return nil, err
	}
	return p, nil
}

// waitHealthy polls url until it answers 200 (and, for etcd, reports health
// true), the process exits, or timeout passes.
func (c *Cluster) waitHealthy(ctx context.Context, hc *http.Client, p *process, url, token string, timeout time.Duration) error {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before becoming healthy; last log lines:\n%s", p.name, p.waitErr, p.logTail(20))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			ok := resp.StatusCode == http.StatusOK
			if ok && p.name == "etcd" {
				ok = strings.Contains(string(body), `"health":"true"`)
			}
			if ok {
				c.logf("%s healthy after %s", p.name, since(began))
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy after %s (%s); last log lines:\n%s", p.name, since(began), last, p.logTail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// healthClient trusts the cluster CA, which signs every serving certificate.
func (c *Cluster) healthClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAData) {
		return nil, errors.New("bad CA certificate")
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
			Proxy:             nil, // loopback only, whatever $HTTPS_PROXY says
		},
	}, nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "localcp: "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// FreePorts returns n distinct free TCP ports on 127.0.0.1. They are released
// before the components bind them; a collision makes a component fail loudly.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeKubeconfig writes a self-contained kubeconfig for a token user.
func writeKubeconfig(path, server string, caPEM []byte, user, token string) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: localcp
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: localcp
  context:
    cluster: localcp
    user: %s
current-context: localcp
`, server, base64.StdEncoding.EncodeToString(caPEM), user, token, user)
	return os.WriteFile(path, []byte(content), 0o600)
}
