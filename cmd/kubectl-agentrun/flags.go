package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	"k8s.io/client-go/kubernetes"
)

var errHelp = flag.ErrHelp

// common are the kubectl flags every command takes.
type common struct {
	namespace  string
	context    string
	kubeconfig string
	output     string
}

// newFlags returns a FlagSet with the common flags, in kubectl's spelling
// (-n and --namespace, -o and --output).
func newFlags(name, args string, stderr io.Writer) (*flag.FlagSet, *common) {
	c := &common{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.namespace, "namespace", "", "namespace (default: the kubeconfig context's)")
	fs.StringVar(&c.namespace, "n", "", "shorthand for --namespace")
	fs.StringVar(&c.context, "context", "", "kubeconfig context")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&c.output, "output", "", "json or yaml")
	fs.StringVar(&c.output, "o", "", "shorthand for --output")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kubectl agentrun %s [flags] %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs, c
}

// parse parses flags placed anywhere among the positional arguments, as
// kubectl allows (`run -n demo "task" --timeout 5m`); "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) error {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			// Parse stopped at "--": everything after it is positional.
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// validate checks -o.
func (c *common) validate() error {
	switch c.output {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output must be json or yaml, not %q", c.output)
}

// clients loads the kubeconfig by client-go's rules, with --kubeconfig,
// --context and --namespace as overrides, and returns the clients and the
// namespace to use.
func (c *common) clients() (clientset.Interface, kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.context}
	overrides.Context.Namespace = c.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, nil, "", errors.New("no kubeconfig: set $KUBECONFIG or pass --kubeconfig")
		}
		return nil, nil, "", err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, nil, "", err
	}
	cfg.UserAgent = "kubectl-agentrun/" + rest.DefaultKubernetesUserAgent()
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	return client, kube, ns, nil
}

// oneRun parses the arguments of a command that acts on one run (result,
// cancel): the flags, -o, and exactly one argument, the run's name; it
// returns the client, the namespace and the run as it is now.
func oneRun(ctx context.Context, fs *flag.FlagSet, c *common, args []string) (clientset.Interface, string, *v1alpha1.AgentRun, error) {
	if err := parse(fs, args); err != nil {
		return nil, "", nil, err
	}
	if err := c.validate(); err != nil {
		return nil, "", nil, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, "", nil, fmt.Errorf("%s takes one argument, the name of the run", fs.Name())
	}
	client, _, ns, err := c.clients()
	if err != nil {
		return nil, "", nil, err
	}
	r, err := getRun(ctx, client, ns, fs.Arg(0))
	if err != nil {
		return nil, "", nil, err
	}
	return client, ns, r, nil
}
