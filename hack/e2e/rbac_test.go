package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

// Every controller the suite starts runs as the ServiceAccount that
// manifests/rbac binds, so the task-mode suite passing proves the ClusterRole
// is enough. After the suite, checkRBACAgainstAudit reads the API server's
// audit log and checks each request that ServiceAccount made against the
// rules in the YAML, and that every rule is used: removing a verb the
// controller uses, or granting one it does not, fails the suite.

// unusedOK lists grants the suite cannot exercise, with the reason.
var unusedOK = map[string]string{
	"get /pods/log": "the agent log fallback (--read-logs) needs a kubelet; kwok nodes serve no logs",
	"update sympozium.ai/agentruns/finalizers":          "checked by the OwnerReferencesPermissionEnforcement admission plugin, not sent as a request",
	"update sympozium.ai/skillpacks/finalizers":         "checked by the OwnerReferencesPermissionEnforcement admission plugin, not sent as a request",
	"update sympozium.ai/sympoziuminstances/finalizers": "checked by the OwnerReferencesPermissionEnforcement admission plugin, not sent as a request",
	"list /persistentvolumeclaims":                      "the instance controller's PVC informer starts with a watch-list (client-go's WatchListClient) on this API server; list is its fallback on one without it",
	"list sympozium.ai/sympoziumschedules":              "the schedule controller's informer starts with a watch-list (client-go's WatchListClient) on this API server, as the PVC informer; list is its fallback on one without it",
	"list /secrets":                                     "the instance controller's Secret metadata informer (channels' configRef.secret) starts with a watch-list on this API server, as the PVC informer; list is its fallback on one without it",
	"patch /events":                                     "sent only when the event recorder aggregates repeated events",
	"patch apps/deployments":                            "retires a kept server's Deployment: a server run that fails with cleanup: keep for a reason that does not force the cleanup; no test makes one",
	"patch /services":                                   "retires a kept server's Service (as patch apps/deployments)",
	"get apps/deployments":                              "confirms a lost server's Deployment before the run fails (the cache misses a recorded workload): the suite may lose none",
	"get agents.x-k8s.io/sandboxes":                     "confirms a lost Sandbox before the run fails, as get apps/deployments",
	"get extensions.agents.x-k8s.io/sandboxclaims":      "confirms a lost SandboxClaim before the run fails, as get apps/deployments",
	"patch extensions.agents.x-k8s.io/sandboxclaims":    "retires a kept SandboxClaim: the warm-pool tests use cleanup: delete",
}

type request struct {
	verb, group, resource, subresource, namespace string
	code                                          int
}

func (r request) String() string {
	res := r.resource
	if r.subresource != "" {
		res += "/" + r.subresource
	}
	return fmt.Sprintf("%s %s/%s (namespace %q, code %d)", r.verb, r.group, res, r.namespace, r.code)
}

type rbacRules struct {
	cluster []rbacv1.PolicyRule
	// namespaced rules, by namespace
	roles map[string][]rbacv1.PolicyRule
}

func loadRBAC(root string) (rbacRules, error) {
	rules := rbacRules{roles: map[string][]rbacv1.PolicyRule{}}
	b, err := os.ReadFile(filepath.Join(root, "manifests", "rbac", "clusterrole.yaml"))
	if err != nil {
		return rules, err
	}
	var cr rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &cr); err != nil {
		return rules, err
	}
	rules.cluster = cr.Rules
	b, err = os.ReadFile(filepath.Join(root, "manifests", "rbac", "leader-election.yaml"))
	if err != nil {
		return rules, err
	}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var role rbacv1.Role
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			return rules, err
		}
		if role.Kind == "Role" {
			rules.roles[role.Namespace] = append(rules.roles[role.Namespace], role.Rules...)
		}
	}
	return rules, nil
}

func ruleAllows(r rbacv1.PolicyRule, verb, group, resource string) bool {
	return slices.Contains(r.Verbs, verb) && slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource)
}

// grants returns every "verb group/resource" the rules grant.
func (rs rbacRules) grants() []string {
	var out []string
	add := func(rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						out = append(out, v+" "+g+"/"+res)
					}
				}
			}
		}
	}
	add(rs.cluster)
	for _, rules := range rs.roles {
		add(rules)
	}
	sort.Strings(out)
	return out
}

// allowed returns the grant that allows req, or "".
func (rs rbacRules) allowed(req request) string {
	res := req.resource
	if req.subresource != "" {
		res += "/" + req.subresource
	}
	rules := append([]rbacv1.PolicyRule(nil), rs.cluster...)
	rules = append(rules, rs.roles[req.namespace]...)
	for _, r := range rules {
		if ruleAllows(r, req.verb, req.group, res) {
			return req.verb + " " + req.group + "/" + res
		}
	}
	return ""
}

// checkRequests fails on a request that was refused or that the rules do not
// allow, and on a grant no request used (unless listed in unusedOK).
func checkRequests(rules rbacRules, reqs []request) error {
	var problems []string
	used := map[string]bool{}
	for _, req := range reqs {
		if req.code == 403 && grantRefusalExpected(req) {
			// A test asked for a grant the controller does not hold, to
			// see the run fail with GrantRefused: the verb was used.
			used[rules.allowed(req)] = true
			continue
		}
		if req.code == 403 {
			problems = append(problems, "refused by the API server: "+req.String())
			continue
		}
		g := rules.allowed(req)
		if g == "" {
			problems = append(problems, "not granted by manifests/rbac: "+req.String())
			continue
		}
		used[g] = true
	}
	for _, g := range rules.grants() {
		if !used[g] && unusedOK[g] == "" {
			problems = append(problems, "granted but never used: "+g)
		}
	}
	sort.Strings(problems)
	problems = slices.Compact(problems)
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// refusalsExpected holds the namespaces in which a test makes the
// controller create a Role or binding granting more than it holds: the API
// server's 403 there is the expected escalation refusal.
var refusalsExpected sync.Map

func expectGrantRefusals(ns string) { refusalsExpected.Store(ns, true) }

func grantRefusalExpected(req request) bool {
	_, ok := refusalsExpected.Load(req.namespace)
	return ok && req.verb == "create" && req.group == "rbac.authorization.k8s.io"
}

func readAudit(path, user string) ([]request, error) {
	var reqs []request
	err := localcp.ReadAuditLog(path, func(ev *localcp.AuditEvent) {
		if ev.User.Username == user { // discovery and other non-resource requests need no grant
			reqs = append(reqs, request{verb: ev.Verb, group: ev.ObjectRef.APIGroup, resource: ev.ObjectRef.Resource,
				subresource: ev.ObjectRef.Subresource, namespace: ev.ObjectRef.Namespace, code: ev.Code()})
		}
	})
	return reqs, err
}

func checkRBACAgainstAudit(e *env) error {
	rules, err := loadRBAC(e.root)
	if err != nil {
		return err
	}
	reqs, err := readAudit(e.cluster.AuditLogPath(), controllerUser)
	if err != nil {
		return err
	}
	if len(reqs) == 0 {
		return fmt.Errorf("the audit log has no request of %s", controllerUser)
	}
	return checkRequests(rules, reqs)
}

// rbacCheckWanted is true when the whole suite ran: with -run, grants may go
// unused legitimately.
func rbacCheckWanted() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.run") {
			return false
		}
	}
	return true
}

// TestRBACCheckCatchesMissingVerb shows the audit check fails when a verb
// the controller uses is removed from the ClusterRole, or one is added that
// it never uses.
func TestRBACCheckCatchesMissingVerb(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	rules, err := loadRBAC(root)
	require.NoError(t, err)
	// One request for every grant, as a complete run makes.
	var reqs []request
	for _, g := range rules.grants() {
		verb, gr, _ := strings.Cut(g, " ")
		group, res, _ := strings.Cut(gr, "/")
		resource, sub, _ := strings.Cut(res, "/")
		ns := "ns"
		for n, rs := range rules.roles {
			for _, r := range rs {
				if ruleAllows(r, verb, group, res) {
					ns = n
				}
			}
		}
		reqs = append(reqs, request{verb: verb, group: group, resource: resource, subresource: sub, namespace: ns, code: 200})
	}
	require.NoError(t, checkRequests(rules, reqs))

	// Remove "delete" on jobs: the requests that need it are reported.
	cut := rbacRules{roles: rules.roles}
	for _, r := range rules.cluster {
		r = *r.DeepCopy()
		if slices.Contains(r.Resources, "jobs") {
			r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == "delete" })
		}
		cut.cluster = append(cut.cluster, r)
	}
	err = checkRequests(cut, reqs)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not granted by manifests/rbac: delete batch/jobs")

	// A refused request fails too.
	err = checkRequests(rules, append(reqs, request{verb: "create", group: "batch", resource: "jobs", code: 403}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused by the API server")

	// And a grant nobody uses.
	err = checkRequests(rules, slices.DeleteFunc(slices.Clone(reqs), func(r request) bool {
		return r.verb == "create" && r.resource == "jobs"
	}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "granted but never used: create batch/jobs")
}

// jobCreates counts, per Job name, the successful Job creations in
// namespace ns that the API server's audit log records.
func jobCreates(e *env, ns string) (map[string]int, error) {
	out := map[string]int{}
	err := localcp.ReadAuditLog(e.cluster.AuditLogPath(), func(ev *localcp.AuditEvent) {
		if ev.Verb == "create" && ev.ObjectRef.Resource == "jobs" && ev.ObjectRef.Namespace == ns && ev.Code() == 201 {
			out[ev.ObjectRef.Name]++
		}
	})
	return out, err
}

func init() {
	// client-go's informers stream their initial state with a watch
	// (WatchListClient); list is their fallback against API servers that
	// cannot, so it stays granted.
	for _, r := range []string{"/configmaps", "/pods", "batch/jobs", "sympozium.ai/agentruns", "sympozium.ai/skillpacks",
		"sympozium.ai/sympoziuminstances", "apps/deployments", "/services", "rbac.authorization.k8s.io/rolebindings",
		"rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/clusterrolebindings"} {
		unusedOK["list "+r] = "informers list only when the API server cannot stream a watch list"
	}
}
