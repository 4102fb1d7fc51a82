// Package v1alpha1 holds the sympozium.ai/v1alpha1 API: AgentRun (one
// invocation of an LLM agent), SympoziumInstance (the agent a run belongs to)
// and SkillPack (instructions mounted into agent pods).
//
// +k8s:deepcopy-gen=package
// +groupName=sympozium.ai
package v1alpha1
