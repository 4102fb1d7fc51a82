// Package workload builds the objects of an AgentRun: the agent pod of the
// pod contract (SPEC §3; pod.go) and the workloads that carry it
// (workloads.go): the Job of a task-mode run, the Deployment and Service
// of a server-mode run, the agent-sandbox Sandbox or SandboxClaim.
//
// Everything here is pure: the output depends only on the arguments (the
// clock is Inputs.Now), is the same whatever the order of map iteration, and
// the inputs, which point into informer caches, are never mutated.
package workload
