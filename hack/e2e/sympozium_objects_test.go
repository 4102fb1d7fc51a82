package e2e

// Objects as sympozium's Go code paths build them (github.com/sympozium-ai/
// sympozium at 25c0bb2), written here as the JSON its Go types marshal to:
// fields without omitempty in its types (agentId, sessionKey,
// model.authSecretRef, channels[].configRef, memory.enabled,
// observability.enabled, ...) are present even when empty, and every object
// carries the empty status a Go client sends. Values that come from user
// input are made up; the shapes are the source's.
var goBuiltObjects = []struct{ source, yaml string }{
	{
		// The SympoziumSchedule controller: no sessionKey (still so at the
		// original's HEAD), the instance's first non-empty auth secret.
		"internal/controller/sympoziumschedule_controller.go:169-217", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: alice-heartbeat-1
  creationTimestamp: null
  labels:
    sympozium.ai/instance: alice
    sympozium.ai/schedule: alice-heartbeat
    sympozium.ai/type: heartbeat
spec:
  instanceRef: alice
  agentId: schedule-alice-heartbeat
  sessionKey: ""
  task: Check the cluster and report anything unusual.
  model:
    provider: openai
    model: gpt-4o
    authSecretRef: alice-openai-key
  skills:
  - skillPackRef: k8s-ops
  - skillPackRef: memory
status: {}
`}, {
		// The same for a keyless local model: no auth secret at all.
		"internal/controller/sympoziumschedule_controller.go:169-217 (keyless)", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: local-sweep-3
  creationTimestamp: null
  labels:
    sympozium.ai/instance: local
    sympozium.ai/schedule: local-sweep
    sympozium.ai/type: sweep
spec:
  instanceRef: local
  agentId: schedule-local-sweep
  sessionKey: ""
  task: Sweep the namespace.
  model:
    provider: ollama
    model: llama3.1
    baseURL: http://ollama.default.svc:11434/v1
    authSecretRef: ""
    nodeSelector:
      gpu: "true"
status: {}
`}, {
		// The TUI's "run" command: no agentId, no sessionKey, timeout 10m.
		"cmd/sympozium/main.go:7659-7680", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: alice-run-1764320000
  creationTimestamp: null
  labels:
    sympozium.ai/instance: alice
spec:
  instanceRef: alice
  agentId: ""
  sessionKey: ""
  task: List the failing pods.
  model:
    provider: openai
    model: gpt-4o
    authSecretRef: alice-openai-key
  skills:
  - skillPackRef: k8s-ops
  - skillPackRef: github-gitops
    params:
      repo: example/repo
  timeout: 10m0s
status: {}
`}, {
		// The channel router: reply annotations and the trace context.
		"internal/controller/channel_router.go:180-216", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: alice-ch-x7k2p
  creationTimestamp: null
  labels:
    sympozium.ai/instance: alice
    sympozium.ai/source: channel
    sympozium.ai/source-channel: telegram
  annotations:
    sympozium.ai/reply-channel: telegram
    sympozium.ai/reply-chat-id: "123456789"
    sympozium.ai/sender-name: Ada
    sympozium.ai/sender-id: "42"
    otel.dev/traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
spec:
  instanceRef: alice
  agentId: primary
  sessionKey: channel-telegram-123456789-1764320000000000000
  task: why is the api slow?
  model:
    provider: anthropic
    model: claude-sonnet-4-20250514
    authSecretRef: alice-anthropic-key
  skills:
  - skillPackRef: k8s-ops
  timeout: 10m0s
status: {}
`}, {
		// The sub-agent spawner.
		"internal/orchestrator/spawner.go:93-119", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: alice-ch-x7k2p-sub-1
  creationTimestamp: null
  labels:
    sympozium.ai/instance: alice
    sympozium.ai/agent-id: researcher
    sympozium.ai/parent-run: alice-ch-x7k2p
    sympozium.ai/component: agent-run
spec:
  instanceRef: alice
  agentId: researcher
  sessionKey: alice-ch-x7k2p-sub-1
  parent:
    runName: alice-ch-x7k2p
    sessionKey: channel-telegram-123456789-1764320000000000000
    spawnDepth: 1
  task: Read the API's logs of the last hour.
  systemPrompt: You are a careful researcher.
  model:
    provider: anthropic
    model: claude-sonnet-4-20250514
    authSecretRef: ""
  cleanup: delete
status: {}
`}, {
		// Both sandboxes enabled: sympozium admits it and the agent sandbox
		// wins (its integration test, Test 5).
		"test/integration/test-agent-sandbox.sh:298-330", `
apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: both-sandboxes
  labels:
    sympozium.ai/instance: sandbox-inst
    sympozium.ai/component: agent-run
spec:
  instanceRef: sandbox-inst
  agentId: default
  sessionKey: test-both-abc12
  task: Both sandbox modes test
  model:
    provider: openai
    model: gpt-4o-mini
    authSecretRef: sandbox-inst-test-key
  sandbox:
    enabled: true
  agentSandbox:
    enabled: true
    runtimeClass: kata
`}, {
		// TUI onboarding: an authRef without provider, a channel, a policy,
		// the agent sandbox, the default skills and memory.
		"cmd/sympozium/main.go:10113-10180", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: onboarded
  creationTimestamp: null
spec:
  agents:
    default:
      model: gpt-4o
      agentSandbox:
        enabled: true
        runtimeClass: gvisor
  authRefs:
  - secret: onboarded-openai-key
  channels:
  - type: telegram
    configRef:
      secret: onboarded-telegram-secret
  policyRef: onboarded-policy
  skills:
  - skillPackRef: k8s-ops
  - skillPackRef: llmfit
  - skillPackRef: memory
  - skillPackRef: github-gitops
    params:
      repo: example/repo
  memory:
    enabled: true
    maxSizeKB: 256
status: {}
`}, {
		// TUI onboarding with WhatsApp (QR pairing: no channel secret) and a
		// local model (no key, no authRefs).
		"cmd/sympozium/main.go:10113-10180 (whatsapp, keyless)", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: onboarded-local
  creationTimestamp: null
spec:
  agents:
    default:
      model: llama3.1
      baseURL: http://ollama.default.svc:11434/v1
  channels:
  - type: whatsapp
    configRef:
      secret: ""
  skills:
  - skillPackRef: k8s-ops
  - skillPackRef: llmfit
  - skillPackRef: memory
  memory:
    enabled: true
    maxSizeKB: 256
status: {}
`}, {
		// A PersonaPack's instance: the pack's authRefs, memory with the
		// persona's prompt, the default observability, channels with access
		// control, skills with params, the web-endpoint skill.
		"internal/controller/personapack_controller.go:400-500", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: devteam-reviewer
  creationTimestamp: null
  labels:
    sympozium.ai/persona-pack: devteam
    sympozium.ai/persona: reviewer
spec:
  agents:
    default:
      model: gpt-4o
  authRefs:
  - secret: devteam-openai-key
  memory:
    enabled: true
    maxSizeKB: 256
    systemPrompt: You review pull requests.
  observability:
    enabled: false
    otlpEndpoint: sympozium-otel-collector.sympozium-system.svc:4317
    otlpProtocol: grpc
    serviceName: sympozium
    resourceAttributes:
      deployment.environment: cluster
      k8s.cluster.name: unknown
  skills:
  - skillPackRef: code-review
  - skillPackRef: github-gitops
    params:
      repo: example/repo
  - skillPackRef: memory
  - skillPackRef: web-endpoint
    params:
      hostname: reviewer.example.com
  channels:
  - type: slack
    configRef:
      secret: devteam-slack-secret
    accessControl:
      allowedSenders: [U123, U456]
      deniedSenders: [U999]
      allowedChats: [C001]
      denyMessage: Not for you.
  - type: discord
    configRef:
      secret: ""
status: {}
`}, {
		// Two authRefs without provider: they collided as list-map keys.
		"issue 11 (two authRefs without provider)", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: two-keys
spec:
  agents:
    default:
      model: gpt-4o
  authRefs:
  - secret: two-keys-openai-key
  - secret: two-keys-github-token
`}, {
		// The web UI through sympozium's API server: provider and secret,
		// channels and skills as the UI sends them.
		"internal/apiserver/server.go:540-620, web/src/pages/instances.tsx:45-80", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: from-ui
  creationTimestamp: null
  labels:
    app.kubernetes.io/managed-by: sympozium
spec:
  agents:
    default:
      model: gpt-4o
      thinking: medium
      nodeSelector:
        pool: agents
  authRefs:
  - provider: openai
    secret: from-ui-openai-key
  skills:
  - skillPackRef: k8s-ops
  - skillPackRef: web-endpoint
    params:
      rate_limit_rpm: "120"
      hostname: from-ui.example.com
  channels:
  - type: telegram
    configRef:
      secret: from-ui-telegram-secret
status: {}
`}, {
		// Every other field of its instance type: MCP servers (inline URL,
		// docs/mcp-servers.md:230), the deprecated webEndpoint, the
		// instance's sandbox and warm pool defaults, sub-agent limits.
		"api/v1alpha1/sympoziuminstance_types.go, docs/mcp-servers.md:225-235", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: everything
spec:
  agents:
    default:
      model: claude-sonnet-4-20250514
      baseURL: https://api.example.com/v1
      thinking: high
      sandbox:
        enabled: true
        image: ghcr.io/sympozium-ai/sympozium/sandbox:latest
        resources:
          limits:
            cpu: "2"
            memory: 4Gi
      agentSandbox:
        enabled: true
        runtimeClass: gvisor
        warmPool:
          size: 3
          runtimeClass: gvisor
          resources:
            requests:
              cpu: 500m
              memory: 1Gi
      subagents:
        maxDepth: 3
        maxConcurrent: 5
        maxChildrenPerAgent: 2
  authRefs:
  - provider: anthropic
    secret: everything-anthropic-key
  policyRef: restrictive
  mcpServers:
  - name: my-mcp
    url: http://my-mcp-service.namespace.svc:8080
    toolsPrefix: my
    timeout: 30
    authSecret: my-mcp-token
    authKey: token
    headers:
      X-Tenant: team-a
    toolsAllow: [get_pods]
    toolsDeny: [delete_pod]
  webEndpoint:
    enabled: true
    hostname: everything.example.com
    authSecretRef: everything-web-key
    rateLimit:
      requestsPerMinute: 60
      burstSize: 10
  observability:
    enabled: true
    otlpEndpoint: http://otel-collector.observability.svc:4318
    otlpProtocol: http/protobuf
    serviceName: everything
    headers:
      x-honeycomb-team: abc
    headersSecretRef: otel-headers
    samplingRatio: "0.25"
    resourceAttributes:
      k8s.cluster.name: prod
`}, {
		// The schedule router, for an agent's request over NATS: a
		// heartbeat, Forbid, includeMemory true.
		"internal/controller/schedule_router.go:113-131", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: alice-daily-report
  creationTimestamp: null
  labels:
    sympozium.ai/instance: alice
    sympozium.ai/source: agent
spec:
  instanceRef: alice
  schedule: 0 9 * * 1-5
  task: Post the daily report to the team channel.
  type: heartbeat
  concurrencyPolicy: Forbid
  includeMemory: true
status: {}
`}, {
		// The PersonaPack controller: one per persona with a schedule, the
		// team objective before the persona's task (its controller owner
		// reference to the pack is left out: it needs the pack's UID).
		"internal/controller/personapack_controller.go:503-545", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: platform-team-reviewer-schedule
  creationTimestamp: null
  labels:
    sympozium.ai/persona-pack: platform-team
    sympozium.ai/persona: reviewer
spec:
  instanceRef: platform-team-reviewer
  schedule: 0 */6 * * *
  task: |-
    TEAM OBJECTIVE: Keep the staging cluster healthy.

    YOUR ROLE TASK: Review the open pull requests.
  type: sweep
  concurrencyPolicy: Forbid
  includeMemory: true
status: {}
`}, {
		// The API server, creating an instance with heartbeatInterval 30m.
		"internal/apiserver/server.go:626-651", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: alice-heartbeat
  creationTimestamp: null
  labels:
    app.kubernetes.io/managed-by: sympozium
    sympozium.ai/instance: alice
spec:
  instanceRef: alice
  schedule: '*/30 * * * *'
  task: heartbeat
  type: heartbeat
  concurrencyPolicy: Forbid
  includeMemory: true
status: {}
`}, {
		// The API server's POST /api/v1/schedules (the web UI): no labels,
		// type and concurrencyPolicy only when given, includeMemory never
		// (so false, omitted: the CRD's default applies). The name is the
		// one generateName <instanceRef>-schedule- gave.
		"internal/apiserver/server.go:1143-1192", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: alice-schedule-x7k2p
  creationTimestamp: null
spec:
  instanceRef: alice
  schedule: '*/15 * * * *'
  task: Check the queue depth.
  suspend: true
  concurrencyPolicy: Allow
status: {}
`}, {
		// The TUI's edit dialog, creating <instance>-schedule: every field
		// of the dialog; includeMemory off (false, omitted).
		"cmd/sympozium/main.go:4749-4767", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: alice-schedule
  creationTimestamp: null
spec:
  instanceRef: alice
  schedule: 0 * * * *
  task: Review your memory. Summarise what you know so far and note anything that needs attention.
  type: sweep
  suspend: true
  concurrencyPolicy: Replace
status: {}
`}, {
		// The TUI's /schedule command: type scheduled, no concurrencyPolicy.
		"cmd/sympozium/main.go:7940-7966", `
apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata:
  name: alice-sched-1764320000
  creationTimestamp: null
spec:
  instanceRef: alice
  schedule: 30 2 * * *
  task: Rotate the logs.
  type: scheduled
  includeMemory: true
status: {}
`},
}
