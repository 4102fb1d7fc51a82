// Command sympozium-controller reconciles sympozium.ai AgentRuns into Jobs,
// Deployments and Services (mode server) or agent-sandbox Sandboxes,
// and reports their outcome.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	// The IANA zones of schedules' spec.timeZone (and CRON_TZ=): the
	// image has no /usr/share/zoneinfo.
	_ "time/tzdata"

	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/manager"
)

var version = "dev"

func main() {
	cfg := manager.DefaultConfig()
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty means in-cluster configuration.")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "Workers per AgentRun queue (the instance, skill pack and schedule queues get a quarter, at least 1).")
	qps := fs.Float64("kube-api-qps", float64(cfg.QPS), "Client queries per second to the API server.")
	fs.IntVar(&cfg.Burst, "kube-api-burst", cfg.Burst, "Client burst to the API server.")
	fs.BoolVar(&cfg.Compression, "kube-api-compression", cfg.Compression, "Accept gzip-compressed responses from the API server (its watch streams and large lists), as client-go does by default. =false saves the API server and the controller the gzip of every watch event, but the streams grow several times, and a controller short of CPU then falls behind its watches sooner (the API server closes them; they resume).")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Watch only this namespace; empty watches all.")
	fs.DurationVar(&cfg.ResyncPeriod, "resync-period", cfg.ResyncPeriod, "Informer resync period (a safety net; 0 disables).")
	fs.StringVar(&cfg.AgentImage, "agent-image", cfg.AgentImage, "Image of the agent container.")
	fs.StringVar(&cfg.SandboxImage, "sandbox-image", cfg.SandboxImage, "Default image of the container sandbox sidecar.")
	fs.StringVar(&cfg.EventBusURL, "event-bus-url", "", "sympozium's event bus (e.g. nats://nats.sympozium-system.svc:4222); when set, agent pods get the ipc-bridge sidecar that publishes their result to it.")
	fs.StringVar(&cfg.ImageRegistry, "image-registry", envOr("SYMPOZIUM_IMAGE_REGISTRY", cfg.ImageRegistry), "Registry of the instances' channel gateway (channel-<type>) and memory server (skill-memory) images, as sympozium's SYMPOZIUM_IMAGE_REGISTRY (which is this flag's default when set).")
	fs.StringVar(&cfg.ImageTag, "image-tag", cfg.ImageTag, "Tag of the instances' channel gateway and memory server images (sympozium's controller uses its own version, latest when unset).")
	fs.StringVar(&cfg.IPCBridgeImage, "ipc-bridge-image", cfg.IPCBridgeImage, "Image of the ipc-bridge sidecar (with --event-bus-url).")
	fs.StringVar(&cfg.MemoryWaitImage, "memory-wait-image", cfg.MemoryWaitImage, "Image (with sh and wget) of the wait-for-memory init container of runs whose instance lists the memory skill: it waits up to 60 s for the instance's memory server, as sympozium's does.")
	fs.BoolVar(&cfg.AllowHostAccess, "allow-host-access", false, "Let SkillPack sidecars with hostAccess (host namespaces, root, hostPath) run; such pods break Pod Security restricted. Without it, runs mounting one fail.")
	fs.StringVar(&cfg.SkillsNamespace, "skills-namespace", cfg.SkillsNamespace, "Namespace of the cluster's SkillPacks (sympozium installs its built-in ones there): only SkillPacks from there may declare clusterRBAC.")
	fs.DurationVar(&cfg.DefaultTimeout, "default-timeout", cfg.DefaultTimeout, "Timeout of runs whose spec and instance set none.")
	fs.DurationVar(&cfg.Grace, "fail-fast-grace", cfg.Grace, "How long an image pull failure, a missing Secret or ConfigMap, or a missing parent run is tolerated before the run fails.")
	fs.IntVar(&cfg.MaxConcurrentRuns, "max-concurrent-runs", 0, "Cap on the admitted, unfinished runs of the whole controller (every instance, every mode); beyond it runs wait in Pending (WaitingForCapacity), oldest first. 0 is no limit.")
	fs.IntVar(&cfg.MaxResultBytes, "max-result-bytes", cfg.MaxResultBytes, "Bound of status.result; longer results are truncated and flagged.")
	fs.StringVar(&cfg.SandboxGroup, "agent-sandbox-group", cfg.SandboxGroup, "API group of the agent-sandbox Sandbox (runs with agentSandbox.enabled).")
	fs.StringVar(&cfg.SandboxClaimGroup, "agent-sandbox-claim-group", cfg.SandboxClaimGroup, "API group of the agent-sandbox SandboxClaim (runs with agentSandbox.warmPoolRef).")
	fs.StringVar(&cfg.SandboxVersion, "agent-sandbox-version", "", "Version of the agent-sandbox API to use (v1beta1 or v1alpha1); empty discovers it, preferring v1beta1.")
	fs.DurationVar(&cfg.SandboxRecheck, "agent-sandbox-recheck", cfg.SandboxRecheck, "How often discovery looks for the agent-sandbox API again, so that installing or removing it needs no restart; a run that needs the API while it is missing looks at once.")
	fs.BoolVar(&cfg.ReadLogs, "read-logs", cfg.ReadLogs, "Read the agent's log tail for the result marker when its termination message has none.")
	fs.BoolVar(&cfg.ProgressEvents, "progress-events", cfg.ProgressEvents, "Record an Event for every transition, the happy path's too (JobCreated, and Started of a task), as the specification asks. =false leaves those two in the Admitted and Running conditions only: a run that succeeds gets one Event, Succeeded, instead of three, and every Warning, wait and outcome is still recorded.")
	fs.StringVar(&cfg.MetricsAddr, "metrics-bind-address", cfg.MetricsAddr, "Address of the /metrics endpoint; 0 disables it.")
	fs.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry collector's OTLP/HTTP base URL (e.g. http://otel-collector.observability:4318): a span per finished run is sent to its /v1/traces, in the run's trace. Empty: the OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT environment variable, else no spans.")
	fs.BoolVar(&cfg.Profiling, "profiling", cfg.Profiling, "Serve Go profiles (net/http/pprof) under /debug/pprof/ on the metrics address.")
	fs.StringVar(&cfg.ProbeAddr, "health-probe-bind-address", cfg.ProbeAddr, "Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", false, "Reconcile only while holding the leader Lease.")
	fs.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", cfg.LeaderElectionNamespace, "Namespace of the leader Lease.")
	fs.StringVar(&cfg.LeaderElectionID, "leader-election-id", cfg.LeaderElectionID, "Name of the leader Lease.")
	fs.DurationVar(&cfg.LeaseDuration, "leader-elect-lease-duration", cfg.LeaseDuration, "Lease duration of leader election.")
	fs.DurationVar(&cfg.RenewDeadline, "leader-elect-renew-deadline", cfg.RenewDeadline, "Renew deadline of leader election.")
	fs.DurationVar(&cfg.RetryPeriod, "leader-elect-retry-period", cfg.RetryPeriod, "Retry period of leader election.")
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	_ = fs.Parse(os.Args[1:])
	cfg.QPS = float32(*qps)
	if *showVersion {
		fmt.Println("sympozium-controller", version)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := klog.LoggerWithName(klog.Background(), "sympozium-controller")
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Starting", "version", version, "namespace", cfg.Namespace, "leaderElect", cfg.LeaderElect)
	if err := manager.Run(ctx, cfg); err != nil {
		logger.Error(err, "Controller stopped")
		klog.Flush()
		os.Exit(1)
	}
	logger.Info("Stopped")
	klog.Flush()
}

// envOr is the environment variable k, or def when it is unset or empty.
func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
