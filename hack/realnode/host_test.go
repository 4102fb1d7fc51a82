//go:build linux

package realnode

import (
	"slices"
	"strings"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b/c`); got != "/tmp/a b/c" {
		t.Fatalf("got %q", got)
	}
	if got := unescapeMount("/run/netns/cni-1"); got != "/run/netns/cni-1" {
		t.Fatalf("got %q", got)
	}
}

func TestUnquoteRule(t *testing.T) {
	in := strings.Fields(`PREROUTING -i rncni0 -m comment --comment "kubelet canary rule" -j DNAT`)
	want := []string{"PREROUTING", "-i", "rncni0", "-m", "comment", "--comment", "kubelet canary rule", "-j", "DNAT"}
	if got := unquoteRule(in); !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	in = strings.Fields(`PREROUTING --comment "one" -j X`)
	if got := unquoteRule(in); !slices.Equal(got, []string{"PREROUTING", "--comment", "one", "-j", "X"}) {
		t.Fatalf("got %q", got)
	}
}

func TestMountsOfTheNode(t *testing.T) {
	st := &state{Dir: "/tmp/x/node", NewDirs: []string{"/run/containerd", "/var/lib/kubelet"}}
	for mp, want := range map[string]bool{
		"/tmp/x/node/kubelet":                    true,
		"/tmp/x/node/containerd/state/io/rootfs": true,
		"/tmp/x/node2":                           false,
		"/tmp/x":                                 false,
		"/run/netns/cni-1234":                    true,
		"/run/netns":                             false,
		"/run/containerd":                        true,
		"/run/containerd/io/shm":                 true,
		"/run/containerdx":                       false,
		"/var/lib/kubelet/pods/x":                true,
		"/var/lib":                               false,
		"/":                                      false,
	} {
		if got := st.ours(mp); got != want {
			t.Errorf("ours(%q) = %v, want %v", mp, got, want)
		}
	}
}
