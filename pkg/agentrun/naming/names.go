// Package naming derives the deterministic names of the objects the
// controller creates for an AgentRun.
//
// Names are a pure function of the run's name: the same run always maps to
// the same children, across restarts and replicas, so that a create that
// races a stale cache ends in AlreadyExists instead of a duplicate. Names
// that do not fit the target kind's rules are shortened (or sanitised) and
// given a suffix derived from sha256 of the original name, so that two runs
// sharing a long prefix still get distinct children.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxLength is the longest name (or label value) this package returns: a
// DNS-1123/DNS-1035 label, and the longest label value.
const MaxLength = validation.DNS1123LabelMaxLength

// HashLength is the number of hex digits of sha256 appended to shortened
// names.
const HashLength = 8

// ServerSuffix ends the Deployment and Service of a server-mode run.
const ServerSuffix = "-server"

// SkillContainerPrefix starts the container name of a SkillPack sidecar.
const SkillContainerPrefix = "skill-"

// digitPrefix is put before names that must start with a letter but do not.
const digitPrefix = "r-"

// JobName is the name of the Job of a task-mode run: the run's name when it
// is at most 63 characters (a Job's name becomes the value of its pods'
// job-name label), else its first characters, then '-' and 8 hex digits of
// sha256(run). The shortened form is exactly 63 characters unless the cut
// prefix had to lose a trailing '-' or '.'.
//
// run is an AgentRun name, so a DNS-1123 subdomain; the result is then both a
// DNS-1123 subdomain and a valid label value.
func JobName(run string) string {
	if len(run) <= MaxLength {
		return run
	}
	return shorten(run, run, "")
}

// LabelValue returns v when it is a valid label value, else a valid label
// value derived from it: characters a label value cannot hold become '-',
// and the value is cut to fit with a hash of v appended. Distinct values
// that are not valid label values map to distinct results (up to sha256
// collisions of 8 hex digits).
func LabelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isAlnum(c) || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(b.String(), "-_.")
	return shorten(s, v, "")
}

// ServerName is the name of the Deployment and the Service of a
// server-mode run: "<run>-server". A Service name must be a DNS-1035 label
// (at most 63 lowercase alphanumerics or '-', starting with a letter), while
// run names are DNS-1123 subdomains (they may hold '.', start with a digit
// and be 253 characters long). When "<run>-server" is not a DNS-1035 label,
// the run name is sanitised ('.' becomes '-', "r-" is put before a leading
// digit), cut to fit, and followed by 8 hex digits of sha256(run) and
// "-server".
func ServerName(run string) string {
	return dns1035(run, ServerSuffix)
}

// SandboxName is the name of the agent-sandbox Sandbox of a run. The Sandbox
// controller creates a Pod and (optionally) a headless Service named like
// the Sandbox, so this is a DNS-1035 label: the run name when it already is
// one, else a sanitised, hash-suffixed form as in ServerName.
func SandboxName(run string) string {
	return dns1035(run, "")
}

// SandboxClaimName is the name of the SandboxClaim of a warm-pool run. It
// equals SandboxName: a claim that cannot adopt a warm Sandbox makes a new
// Sandbox (and Pod) named like the claim, so the same rules apply. A run has
// either a Sandbox or a SandboxClaim, never both, and they are of different
// kinds, so sharing the name is safe.
func SandboxClaimName(run string) string {
	return dns1035(run, "")
}

// SkillContainerName is the name of the sidecar container of SkillPack pack:
// "skill-<pack>", made a DNS-1035 label (so also a DNS-1123 label, as
// container names must be) with the rules of ServerName.
func SkillContainerName(pack string) string {
	return dns1035(SkillContainerPrefix+pack, "")
}

// dns1035 returns base+suffix when that is a DNS-1035 label; else base
// sanitised, cut, then "-<hash of base>" and suffix. suffix must itself be
// valid inside a DNS-1035 label ending (lowercase alphanumerics and '-',
// ending alphanumeric) and short.
func dns1035(base, suffix string) string {
	if full := base + suffix; len(validation.IsDNS1035Label(full)) == 0 {
		return full
	}
	var b strings.Builder
	b.Grow(len(base) + len(digitPrefix))
	for i := 0; i < len(base); i++ {
		c := base[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		case isLowerAlnum(c) || c == '-':
			b.WriteByte(c)
		default: // '.', and anything else a DNS-1035 label cannot hold
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(b.String(), "-")
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z') {
		s = digitPrefix + s
	}
	return shorten(s, base, suffix)
}

// shorten returns "<prefix>-<hash>"+suffix, at most MaxLength long, where
// prefix is the longest start of s that fits, without a trailing '-', '.'
// or '_', and hash is HashLength hex digits of sha256(original). s must
// start with a character valid at the start of the target name.
func shorten(s, original, suffix string) string {
	h := Hash(original)
	room := max(MaxLength-len(suffix)-1-len(h), 0)
	if len(s) > room {
		s = s[:room]
	}
	s = strings.TrimRight(s, "-._")
	if s == "" {
		// Only the hash is left; it may start with a digit, which every
		// caller except DNS-1035 accepts, and dns1035 always passes a
		// prefix starting with a letter, which survives the trim.
		return h + suffix
	}
	return s + "-" + h + suffix
}

// Hash returns the first HashLength lowercase hex digits of sha256(s).
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:HashLength]
}

func isAlnum(c byte) bool {
	return isLowerAlnum(c) || (c >= 'A' && c <= 'Z')
}

func isLowerAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
}

// SkillSecretVolumeName is the pod volume holding SkillPack pack's
// sidecar.secretRef: "skill-secret-<pack>", a DNS-1123 label (volume names
// must be), shortened with a hash as in ServerName.
func SkillSecretVolumeName(pack string) string {
	return dns1035("skill-secret-"+pack, "")
}

// HostPathVolumeName is the pod volume of the i-th hostAccess mount of
// SkillPack pack's sidecar: "host-<pack>-<i>", a DNS-1123 label.
func HostPathVolumeName(pack string, i int) string {
	return dns1035("host-"+pack+"-"+strconv.Itoa(i), "")
}

// IdentityName is the name of a run's own ServiceAccount:
// "sympozium-run-<run>", a DNS-1123 subdomain (run names are subdomains,
// so only the length can need shortening, with a hash as elsewhere).
func IdentityName(run string) string {
	return subdomain("sympozium-run-" + run)
}

// GrantName is the name of the Role and RoleBinding giving run's
// ServiceAccount the rules of SkillPack pack:
// "sympozium-run-<run>.<pack>-<hash>". Run and SkillPack names may both
// hold '.' and '-', so the hash of the pair keeps two pairs from sharing a
// name.
func GrantName(run, pack string) string {
	return subdomain("sympozium-run-" + run + "." + pack + "-" + Hash(run+"/"+pack))
}

// ClusterGrantName is the name of the ClusterRole and ClusterRoleBinding
// giving run's ServiceAccount the cluster rules of SkillPack pack. They are
// cluster-scoped, so the run's namespace is part of the name:
// "sympozium-run-<namespace>.<run>.<pack>-<hash>".
func ClusterGrantName(namespace, run, pack string) string {
	return subdomain("sympozium-run-" + namespace + "." + run + "." + pack + "-" + Hash(namespace+"/"+run+"/"+pack))
}

// subdomain returns s when it is a DNS-1123 subdomain, else its first
// characters (lowercased), '-' and a hash of s, at most 253 characters.
func subdomain(s string) string {
	if len(validation.IsDNS1123Subdomain(s)) == 0 {
		return s
	}
	h := Hash(s)
	t := strings.ToLower(s)
	if room := validation.DNS1123SubdomainMaxLength - 1 - len(h); len(t) > room {
		t = t[:room]
	}
	t = strings.TrimRight(t, "-.")
	return t + "-" + h
}

// LogName is the name of the ConfigMap that keeps the end of a failed
// run's agent log once its pod is deleted: "<run>-log", a DNS-1123
// subdomain (shortened with a hash when the run's name is near the limit).
func LogName(run string) string {
	return subdomain(run + "-log")
}
