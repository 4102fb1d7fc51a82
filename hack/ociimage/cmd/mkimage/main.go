// Command mkimage writes the images of `make image` as OCI image layout tars,
// without an image engine (package hack/ociimage):
//
//	mkimage -controller bin/sympozium-controller -testagent bin/sympozium-testagent -out bin
//
// writes bin/sympozium-controller.oci.tar (the controller, as the Dockerfile
// builds it), and, with -testagent, bin/sympozium-testagent.oci.tar and
// bin/sympozium-pause.oci.tar (the test agent and the pod sandbox image of a
// real node). Import one into a node's containerd with
// `ctr -n k8s.io images import <tar>`, load it into kind with
// `kind load image-archive <tar>`, or push it with `skopeo copy oci-archive:<tar> docker://<registry>/<name>`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	controller := flag.String("controller", "bin/sympozium-controller", "the controller's static binary (make build)")
	name := flag.String("name", ociimage.ControllerImage, "the controller image's reference (as Kubernetes names it: sympozium-controller:dev is docker.io/library/sympozium-controller:dev)")
	testagent := flag.String("testagent", "", "the test agent's static binary (hack/testagent); empty: no test images")
	out := flag.String("out", "bin", "directory of the tars")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	bin, err := os.ReadFile(*controller)
	if err != nil {
		return err
	}
	ref := Normalize(*name)
	path := filepath.Join(*out, "sympozium-controller.oci.tar")
	if err := ociimage.WriteFile(path, ociimage.Controller(bin, ref)); err != nil {
		return err
	}
	fmt.Printf("%s: %s\n", path, ref)
	if *testagent == "" {
		return nil
	}
	agent, err := os.ReadFile(*testagent)
	if err != nil {
		return err
	}
	for _, img := range []struct {
		file string
		img  ociimage.Image
	}{
		{"sympozium-testagent.oci.tar", ociimage.TestAgent(agent, ociimage.TestAgentImage)},
		{"sympozium-pause.oci.tar", ociimage.Pause(agent, ociimage.PauseImage)},
	} {
		path := filepath.Join(*out, img.file)
		if err := ociimage.WriteFile(path, img.img); err != nil {
			return err
		}
		fmt.Printf("%s: %s\n", path, img.img.Name)
	}
	return nil
}

// Normalize spells a reference out as the container runtimes read it:
// "name:tag" is docker.io/library/name:tag, "org/name:tag" docker.io/org/name:tag;
// a first component with a dot or a port, or localhost, is a registry.
func Normalize(ref string) string {
	first, rest, found := strings.Cut(ref, "/")
	switch {
	case !found:
		return "docker.io/library/" + ref
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return ref
	default:
		return "docker.io/" + first + "/" + rest
	}
}
