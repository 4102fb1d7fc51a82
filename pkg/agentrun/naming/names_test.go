package naming

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"
)

var (
	name63  = strings.Repeat("a", 63)
	name64  = strings.Repeat("a", 64)
	name253 = strings.Repeat("abcdefghij.", 23)[:252] + "z"
)

func TestJobName(t *testing.T) {
	tests := map[string]struct {
		run  string
		want string
	}{
		"short":                   {run: "my-run", want: "my-run"},
		"dots kept":               {run: "run.v1.example", want: "run.v1.example"},
		"starts with digit":       {run: "1run", want: "1run"},
		"exactly 63":              {run: name63, want: name63},
		"64 is shortened":         {run: name64, want: strings.Repeat("a", 54) + "-" + Hash(name64)},
		"trailing dash trimmed":   {run: strings.Repeat("a", 53) + "-" + strings.Repeat("b", 20), want: strings.Repeat("a", 53) + "-" + Hash(strings.Repeat("a", 53)+"-"+strings.Repeat("b", 20))},
		"trailing dot trimmed":    {run: strings.Repeat("a", 52) + ".-" + strings.Repeat("b", 20), want: strings.Repeat("a", 52) + "-" + Hash(strings.Repeat("a", 52)+".-"+strings.Repeat("b", 20))},
		"253 subdomain shortened": {run: name253, want: strings.TrimRight(name253[:54], "-.") + "-" + Hash(name253)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := JobName(tc.run)
			assert.Equal(t, tc.want, got)
			assert.LessOrEqual(t, len(got), MaxLength)
			assert.Empty(t, validation.IsDNS1123Subdomain(got))
			assert.Empty(t, validation.IsValidLabelValue(got))
		})
	}
}

func TestJobNameLongIsExactly63WithHash(t *testing.T) {
	run := strings.Repeat("x", 100)
	got := JobName(run)
	require.Len(t, got, 63)
	assert.True(t, strings.HasSuffix(got, "-"+Hash(run)))
	assert.Equal(t, Hash(run), fmt.Sprintf("%x", sha256Sum(run))[:8])
}

func TestHash(t *testing.T) {
	// sha256("abc") = ba7816bf8f01cfea...
	assert.Equal(t, "ba7816bf", Hash("abc"))
	assert.Len(t, Hash(""), HashLength)
}

func TestServerName(t *testing.T) {
	tests := map[string]struct {
		run  string
		want string
	}{
		"short":          {run: "my-run", want: "my-run-server"},
		"56 fits":        {run: strings.Repeat("a", 56), want: strings.Repeat("a", 56) + "-server"},
		"57 shortened":   {run: strings.Repeat("a", 57), want: strings.Repeat("a", 47) + "-" + Hash(strings.Repeat("a", 57)) + "-server"},
		"dot mapped":     {run: "run.v1", want: "run-v1-" + Hash("run.v1") + "-server"},
		"digit prefixed": {run: "1run", want: "r-1run-" + Hash("1run") + "-server"},
		"all digits":     {run: "12345", want: "r-12345-" + Hash("12345") + "-server"},
		"long digit dotted": {
			run:  "9" + strings.Repeat(".ab", 80),
			want: "r-9" + strings.Repeat("-ab", 14) + "-a-" + Hash("9"+strings.Repeat(".ab", 80)) + "-server",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ServerName(tc.run)
			assert.Equal(t, tc.want, got)
			assert.Empty(t, validation.IsDNS1035Label(got))
			assert.True(t, strings.HasSuffix(got, ServerSuffix))
		})
	}
}

func TestSandboxNames(t *testing.T) {
	tests := map[string]struct {
		run  string
		want string
	}{
		"short":     {run: "my-run", want: "my-run"},
		"63":        {run: name63, want: name63},
		"64":        {run: name64, want: strings.Repeat("a", 54) + "-" + Hash(name64)},
		"dot":       {run: "a.b", want: "a-b-" + Hash("a.b")},
		"digit":     {run: "0a", want: "r-0a-" + Hash("0a")},
		"subdomain": {run: name253, want: strings.TrimRight(strings.ReplaceAll(name253[:54], ".", "-"), "-") + "-" + Hash(name253)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, SandboxName(tc.run))
			assert.Equal(t, tc.want, SandboxClaimName(tc.run))
			assert.Empty(t, validation.IsDNS1035Label(SandboxName(tc.run)))
		})
	}
}

func TestSkillContainerName(t *testing.T) {
	assert.Equal(t, "skill-web", SkillContainerName("web"))
	assert.Equal(t, "skill-9web", SkillContainerName("9web"))
	assert.Equal(t, "skill-web-v1-"+Hash("skill-web.v1"), SkillContainerName("web.v1"))
	long := strings.Repeat("p", 100)
	got := SkillContainerName(long)
	assert.Len(t, got, 63)
	assert.True(t, strings.HasPrefix(got, "skill-ppp"))
	assert.Empty(t, validation.IsDNS1123Label(got))
	assert.NotEqual(t, SkillContainerName("web.v1"), SkillContainerName("web-v1"))
}

func TestLabelValue(t *testing.T) {
	tests := map[string]struct {
		in   string
		want string
	}{
		"empty":              {in: "", want: ""},
		"valid":              {in: "My_Instance.v1", want: "My_Instance.v1"},
		"63":                 {in: name63, want: name63},
		"too long like Job":  {in: name64, want: JobName(name64)},
		"253 like Job":       {in: name253, want: JobName(name253)},
		"bad chars":          {in: "a/b c", want: "a-b-c-" + Hash("a/b c")},
		"leading junk":       {in: "--x", want: "x-" + Hash("--x")},
		"only junk":          {in: "///", want: Hash("///")},
		"unicode":            {in: "zażółć", want: "za-" + Hash("zażółć")},
		"trailing separator": {in: "abc.", want: "abc-" + Hash("abc.")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := LabelValue(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Empty(t, validation.IsValidLabelValue(got))
		})
	}
}

// randomSubdomain returns a random DNS-1123 subdomain of length 1..253.
func randomSubdomain(r *rand.Rand) string {
	const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	const inner = alnum + "-"
	n := 1 + r.IntN(253)
	var b strings.Builder
	for b.Len() < n {
		// one DNS label of length 1..20
		l := 1 + r.IntN(20)
		if b.Len() > 0 {
			if b.Len()+1+1 > n {
				break
			}
			b.WriteByte('.')
		}
		if rest := n - b.Len(); l > rest {
			l = rest
		}
		for i := range l {
			if i == 0 || i == l-1 {
				b.WriteByte(alnum[r.IntN(len(alnum))])
			} else {
				b.WriteByte(inner[r.IntN(len(inner))])
			}
		}
	}
	return b.String()
}

func TestGeneratedNamesAreValid(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2)) // fixed seed: reproducible
	seen := map[string]string{}
	for range 5000 {
		run := randomSubdomain(r)
		require.Empty(t, validation.IsDNS1123Subdomain(run), "generator produced an invalid run name %q", run)

		job := JobName(run)
		assert.Empty(t, validation.IsDNS1123Subdomain(job), "JobName(%q)=%q", run, job)
		assert.Empty(t, validation.IsValidLabelValue(job), "JobName(%q)=%q", run, job)
		assert.Equal(t, job, LabelValue(run), "LabelValue and JobName agree on run names")

		for fn, got := range map[string]string{
			"ServerName":       ServerName(run),
			"SandboxName":      SandboxName(run),
			"SandboxClaimName": SandboxClaimName(run),
		} {
			assert.Empty(t, validation.IsDNS1035Label(got), "%s(%q)=%q", fn, run, got)
			assert.Empty(t, validation.IsDNS1123Label(got), "%s(%q)=%q", fn, run, got)
		}
		assert.Empty(t, validation.IsDNS1123Label(SkillContainerName(run)))

		// determinism
		assert.Equal(t, job, JobName(run))
		assert.Equal(t, ServerName(run), ServerName(run))

		// distinct runs, distinct server names
		srv := ServerName(run)
		if prev, ok := seen[srv]; ok {
			assert.Equal(t, prev, run, "ServerName collision")
		}
		seen[srv] = run
	}
}

func TestLongNamesWithSamePrefixDoNotCollide(t *testing.T) {
	prefix := strings.Repeat("shared-prefix-", 6) // 84 chars
	a, b := prefix+"a", prefix+"b"
	for fn, f := range map[string]func(string) string{
		"JobName": JobName, "ServerName": ServerName, "SandboxName": SandboxName,
		"SandboxClaimName": SandboxClaimName, "LabelValue": LabelValue, "SkillContainerName": SkillContainerName,
	} {
		t.Run(fn, func(t *testing.T) {
			assert.NotEqual(t, f(a), f(b))
			assert.LessOrEqual(t, len(f(a)), MaxLength)
		})
	}
}

func TestSanitisedNamesDoNotCollide(t *testing.T) {
	// "a.b" and "a-b" sanitise to the same text; the hash tells them apart.
	assert.NotEqual(t, ServerName("a.b"), ServerName("a-b"))
	assert.NotEqual(t, SandboxName("a.b"), SandboxName("a-b"))
	assert.NotEqual(t, SandboxName("1a"), SandboxName("r-1a"))
}

func TestIdentityAndGrantNames(t *testing.T) {
	assert.Equal(t, "sympozium-run-r1", IdentityName("r1"))
	runs := []string{"r1", "a.b", name63, name64, name253, "r-" + name253[:240]}
	packs := []string{"k8s-ops", "web.v1", name253}
	seen := map[string]string{}
	unique := func(kind, name, of string) {
		t.Helper()
		if prev, ok := seen[kind+"/"+name]; ok {
			t.Errorf("%s %s is the name of both %s and %s", kind, name, prev, of)
		}
		seen[kind+"/"+name] = of
	}
	for _, r := range runs {
		sa := IdentityName(r)
		assert.Empty(t, validation.IsDNS1123Subdomain(sa), sa)
		unique("sa", sa, r)
		for _, p := range packs {
			g := GrantName(r, p)
			assert.Empty(t, validation.IsDNS1123Subdomain(g), g)
			unique("grant", g, r+"/"+p)
			for _, ns := range []string{"team-a", "team-a-b"} {
				c := ClusterGrantName(ns, r, p)
				assert.Empty(t, validation.IsDNS1123Subdomain(c), c)
				unique("cluster", c, ns+"/"+r+"/"+p)
			}
		}
	}
	// Separators inside names cannot make two tuples meet.
	assert.NotEqual(t, GrantName("a-b", "c"), GrantName("a", "b-c"))
	assert.NotEqual(t, ClusterGrantName("a", "b.c", "d"), ClusterGrantName("a.b", "c", "d"))
	for i, v := range []string{SkillSecretVolumeName(name253), HostPathVolumeName(name253, 3), SkillSecretVolumeName("web.v1"), HostPathVolumeName("web.v1", 0)} {
		assert.Empty(t, validation.IsDNS1123Label(v), "%d: %s", i, v)
	}
	assert.Equal(t, "skill-secret-github-gitops", SkillSecretVolumeName("github-gitops"))
	assert.Equal(t, "host-llmfit-2", HostPathVolumeName("llmfit", 2))
	assert.NotEqual(t, HostPathVolumeName(name253, 1), HostPathVolumeName(name253, 2))
}
