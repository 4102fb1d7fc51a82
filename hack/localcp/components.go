package localcp

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// stagesYAML holds the kwok Stages (see stages.yaml).
//
//go:embed stages.yaml
var stagesYAML []byte

// Stages returns the kwok Stage documents the clusters use.
func Stages() []byte { return append([]byte(nil), stagesYAML...) }

// component is one command line to run.
type component struct {
	name      string
	binary    string
	args      []string
	env       []string
	healthURL string
	detach    bool
}

// layout is everything Start prepares before running a process: ports,
// certificates, tokens, kubeconfigs and config files under dir.
type layout struct {
	dir, binDir string
	opts        Options
	pki         *pki
	tokens      map[string]string // user -> token

	etcdPort, etcdPeerPort, apiserverPort, kcmPort, schedulerPort, kwokPort int

	etcdURL, apiserverURL string
}

// Users with a token in the token file.
const (
	userControllerManager = "system:kube-controller-manager"
	userScheduler         = "system:kube-scheduler"
	userKwok              = "kwok"
)

func newLayout(dir, binDir string, opts Options) (*layout, error) {
	l := &layout{dir: dir, binDir: binDir, opts: opts, tokens: map[string]string{}}
	var err error
	if l.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	ports, err := FreePorts(6)
	if err != nil {
		return nil, err
	}
	l.etcdPort, l.etcdPeerPort, l.apiserverPort, l.kcmPort, l.schedulerPort, l.kwokPort =
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	l.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", l.etcdPort)
	l.apiserverURL = fmt.Sprintf("https://127.0.0.1:%d", l.apiserverPort)

	// Static tokens: admin and kwok in system:masters, the controller-manager and
	// the scheduler as the users the default RBAC policy binds their roles to.
	var tokenFile strings.Builder
	for _, u := range []struct{ user, groups string }{
		{adminUser, "system:masters"},
		{userKwok, "system:masters"},
		{userControllerManager, ""},
		{userScheduler, ""},
	} {
		token, err := newToken()
		if err != nil {
			return nil, err
		}
		l.tokens[u.user] = token
		fmt.Fprintf(&tokenFile, "%s,%s,%s", token, u.user, u.user)
		if u.groups != "" {
			fmt.Fprintf(&tokenFile, ",%q", u.groups)
		}
		tokenFile.WriteString("\n")
	}
	files := map[string]string{
		"tokens.csv": tokenFile.String(),
		"audit-policy.yaml": `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`,
		"kube-scheduler.yaml": fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %s
  qps: 500
  burst: 1000
leaderElection:
  leaderElect: false
`, l.kubeconfig("kube-scheduler")),
		"kwok-stages.yaml": string(stagesYAML) + clusterLogsYAML(dir),
		// The log every agent container in LogsNamespace shows (CRI format).
		filepath.Join("kwok-logs", "agent.log"): criLog(AgentLogLines),
	}
	for _, d := range []string{"etcd", "flexvolume", "kwok-workdir", "kwok-logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	for name, user := range map[string]string{
		"kube-controller-manager": userControllerManager,
		"kube-scheduler":          userScheduler,
		"kwok":                    userKwok,
	} {
		if err := writeKubeconfig(l.kubeconfig(name), l.apiserverURL, l.pki.caPEM, user, l.tokens[user]); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *layout) kubeconfig(component string) string {
	return filepath.Join(l.dir, component+".kubeconfig")
}

func (l *layout) component(name string, args ...string) component {
	return component{
		name:   name,
		binary: filepath.Join(l.binDir, name),
		args:   args,
		env:    componentEnv(),
		detach: l.opts.Detach,
	}
}

// componentEnv is the environment of the components: ours, minus what would
// point them at another cluster or a proxy.
func componentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "ETCDCTL_API":
			continue
		}
		if strings.HasPrefix(k, "ETCD_") || strings.HasPrefix(k, "KWOK_") {
			continue // etcd and kwok read flags from the environment
		}
		env = append(env, kv)
	}
	return env
}

func (l *layout) etcd() component {
	peer := fmt.Sprintf("http://127.0.0.1:%d", l.etcdPeerPort)
	return l.component("etcd",
		"--name=localcp",
		"--data-dir="+filepath.Join(l.dir, "etcd"),
		"--listen-client-urls="+l.etcdURL,
		"--advertise-client-urls="+l.etcdURL,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=localcp="+peer,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		// A lone member elects itself after one election timeout: 200ms instead
		// of the default 1s saves most of etcd's start time. With no peers
		// there is nobody to lose the leadership to.
		"--heartbeat-interval=20",
		"--election-timeout=200",
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	)
}

func (l *layout) apiserver() component {
	p := l.pki
	args := []string{
		"--etcd-servers=" + l.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(l.apiserverPort),
		"--cert-dir=" + filepath.Join(l.dir, "kube-apiserver-certs"),
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--token-auth-file=" + filepath.Join(l.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.ServiceAccountPub,
		"--service-account-signing-key-file=" + p.ServiceAccountKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--requestheader-client-ca-file=" + p.FrontProxyCACert,
		"--requestheader-allowed-names=" + frontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.FrontProxyCert,
		"--proxy-client-key-file=" + p.FrontProxyKey,
	}
	if l.opts.AuditLog {
		args = append(args,
			"--audit-policy-file="+filepath.Join(l.dir, "audit-policy.yaml"),
			"--audit-log-path="+filepath.Join(l.dir, auditLogFile),
			"--audit-log-format=json",
			"--audit-log-maxbackup=0",
			"--audit-log-maxsize=0",
		)
	}
	args = append(args, l.opts.ExtraAPIServerFlags...)
	return l.component("kube-apiserver", args...)
}

// servingFlags are the client and secure-serving flags of the controller-manager
// and the scheduler: a kubeconfig with their token, a 127.0.0.1 port with a
// certificate from the cluster CA, and delegated authentication of callers.
func (l *layout) servingFlags(name string, port int) []string {
	kc := l.kubeconfig(name)
	return []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + l.pki.ServingCert,
		"--tls-private-key-file=" + l.pki.ServingKey,
		"--client-ca-file=" + l.pki.CACert,
		"--requestheader-client-ca-file=" + l.pki.FrontProxyCACert,
		"--cert-dir=" + filepath.Join(l.dir, name+"-certs"),
	}
}

func (l *layout) controllerManager() component {
	args := append(l.servingFlags("kube-controller-manager", l.kcmPort),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+l.pki.ServiceAccountKey,
		"--root-ca-file="+l.pki.CACert,
		"--cluster-signing-cert-file="+l.pki.CACert,
		"--cluster-signing-key-file="+l.pki.CAKey,
		"--service-cluster-ip-range="+serviceCIDR,
		"--leader-elect=false",
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
		"--flex-volume-plugin-dir="+filepath.Join(l.dir, "flexvolume"),
		"--controllers=*",
	)
	c := l.component("kube-controller-manager", args...)
	c.healthURL = fmt.Sprintf("https://127.0.0.1:%d/healthz", l.kcmPort)
	return c
}

func (l *layout) scheduler() component {
	args := append(l.servingFlags("kube-scheduler", l.schedulerPort),
		"--config="+filepath.Join(l.dir, "kube-scheduler.yaml"),
	)
	// The scheduler takes its client connection from the config file only.
	args = removeFlag(args, "--kubeconfig")
	c := l.component("kube-scheduler", args...)
	c.healthURL = fmt.Sprintf("https://127.0.0.1:%d/healthz", l.schedulerPort)
	return c
}

func (l *layout) kwok() component {
	c := l.component("kwok",
		"--kubeconfig="+l.kubeconfig("kwok"),
		"--config="+filepath.Join(l.dir, "kwok-stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+NodeAnnotation+"=fake",
		"--server-address="+fmt.Sprintf("127.0.0.1:%d", l.kwokPort),
		"--node-ip=127.0.0.1",
		"--cidr=10.244.0.0/16",
		"--node-lease-duration-seconds=40",
		// The kubelet endpoint: the nodes advertise this port
		// (daemonEndpoints, see the node-initialize Stage) on 127.0.0.1, and
		// the API server reaches kwok's kubelet API there over TLS for
		// `kubectl logs` (served from the ClusterLogs of clusterLogsYAML).
		"--node-port="+strconv.Itoa(l.kwokPort),
		"--tls-cert-file="+l.pki.ServingCert,
		"--tls-private-key-file="+l.pki.ServingKey,
	)
	// kwok also reads ~/.kwok/kwok.yaml unless its work directory points elsewhere.
	c.env = append(c.env, "KWOK_WORKDIR="+filepath.Join(l.dir, "kwok-workdir"))
	c.healthURL = fmt.Sprintf("https://127.0.0.1:%d/healthz", l.kwokPort)
	return c
}

func removeFlag(args []string, flag string) []string {
	out := args[:0:0]
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// LogsNamespace is the namespace whose agent containers have a log: kwok
// serves AgentLogLines for every container named agent there, through its
// kubelet API (kubectl logs, the pods/log subresource). Elsewhere a log
// read fails as before (kwok simulates no logs by default).
const LogsNamespace = "kwok-logs"

// AgentLogLines is the log of every agent container in LogsNamespace.
var AgentLogLines = []string{
	"agent: starting",
	"agent: calling the model",
	"agent: error: the model endpoint refused the request (HTTP 503)",
}

// clusterLogsYAML is the kwok ClusterLogs document appended to the Stages
// of --config: the agent containers of LogsNamespace log kwok-logs/agent.log.
func clusterLogsYAML(dir string) string {
	return fmt.Sprintf(`---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: agent-logs
spec:
  selector:
    matchNamespaces: [%s]
  logs:
  - containers: [agent]
    logsFile: %s
`, LogsNamespace, filepath.Join(dir, "kwok-logs", "agent.log"))
}

// criLog renders lines in the CRI log format the kubelet (and kwok) read:
// "<RFC3339Nano time> stdout F <line>".
func criLog(lines []string) string {
	var b strings.Builder
	for _, line := range lines {
		fmt.Fprintf(&b, "2026-01-01T00:00:00.000000000Z stdout F %s\n", line)
	}
	return b.String()
}
