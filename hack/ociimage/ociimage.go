// Package ociimage writes a container image as an OCI image layout in a tar
// (the format of `docker save` successors, `ctr images import`, `skopeo copy
// oci-archive:`, `kind load image-archive` and `crane push`), without an image
// engine: one uncompressed layer holding the files given, a config, a
// manifest, and an index naming the image.
//
// Written with the standard library (archive/tar, crypto/sha256,
// encoding/json) rather than go-containerregistry: an image here is a static
// binary and two small files, which takes about 150 lines, and a new module
// (with its own dependency tree) would be needed for nothing else. The output
// is reproducible: fixed times and owners, entries in order.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Media types of the OCI image spec v1.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	// AnnotationImageName is the full reference containerd's importer names
	// the image after; AnnotationRefName the tag, as the OCI spec has it.
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// File is one entry of the image's only layer.
type File struct {
	// Path is absolute in the image ("/sympozium-controller"); a directory
	// ends with "/".
	Path string
	// Mode is the permission bits (0o755, 0o1777 for /tmp).
	Mode int64
	// UID and GID own the entry.
	UID, GID int
	// Data is the content of a file; nil for a directory.
	Data []byte
}

// Image is what goes into the layout.
type Image struct {
	// Name is the full reference: docker.io/library/sympozium-controller:dev
	// is what Kubernetes pulls for "sympozium-controller:dev".
	Name  string
	Files []File
	// User is "uid:gid".
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	// Created is the image's creation time; zero means the Unix epoch (a
	// reproducible image).
	Created time.Time
}

// NonRootFiles are the files distroless/static:nonroot provides that a
// static binary running as 65532 needs: /etc/passwd and /etc/group naming
// root and nonroot, a home, and a /tmp.
func NonRootFiles() []File {
	return []File{
		{Path: "/etc/", Mode: 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Path: "/home/", Mode: 0o755},
		{Path: "/home/nonroot/", Mode: 0o700, UID: 65532, GID: 65532},
		{Path: "/tmp/", Mode: 0o1777},
	}
}

// DefaultEnv is the PATH distroless sets.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Write writes img as an OCI image layout tar to w.
func Write(w io.Writer, img Image) error {
	if img.Name == "" || !strings.Contains(img.Name, ":") {
		return fmt.Errorf("image name %q: want a full reference with a tag", img.Name)
	}
	created := img.Created
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	layer, err := layerTar(img.Files, created)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	cfg := map[string]any{
		"created":      created.Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"User":       img.User,
			"Entrypoint": img.Entrypoint,
			"Cmd":        img.Cmd,
			"Env":        img.Env,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history": []map[string]any{{"created": created.Format(time.RFC3339), "created_by": "hack/ociimage"}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        descriptor{MediaType: MediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))},
		"layers":        []descriptor{{MediaType: MediaTypeLayer, Digest: layerDigest, Size: int64(len(layer))}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	tag := img.Name[strings.LastIndex(img.Name, ":")+1:]
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeIndex,
		"manifests": []descriptor{{
			MediaType: MediaTypeManifest, Digest: digest(manifestJSON), Size: int64(len(manifestJSON)),
			Annotations: map[string]string{AnnotationImageName: img.Name, AnnotationRefName: tag},
			Platform:    &platform{Architecture: runtime.GOARCH, OS: "linux"},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
		{"blobs/sha256/" + hexOf(digest(manifestJSON)), manifestJSON},
		{"blobs/sha256/" + hexOf(digest(cfgJSON)), cfgJSON},
		{"blobs/sha256/" + hexOf(layerDigest), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteFile writes img to path (through a temporary file, renamed at the end).
func WriteFile(path string, img Image) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := Write(f, img); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// layerTar is the layer: files sorted by path, parents listed before
// children (missing parent directories are added, root-owned, 0755).
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/") || f.Path == "/" {
			return nil, fmt.Errorf("file path %q: want an absolute path below /", f.Path)
		}
		p := strings.TrimPrefix(f.Path, "/")
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("file %s listed twice", f.Path)
		}
		byPath[p] = f
		for dir := path.Dir(strings.TrimSuffix(p, "/")); dir != "."; dir = path.Dir(dir) {
			if _, ok := byPath[dir+"/"]; !ok {
				byPath[dir+"/"] = File{Path: "/" + dir + "/", Mode: 0o755}
			}
		}
	}
	names := slices.Sorted(maps.Keys(byPath))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		f := byPath[name]
		h := &tar.Header{Name: name, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX}
		if strings.HasSuffix(name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func hexOf(d string) string { return strings.TrimPrefix(d, "sha256:") }

// The images of this repository, as `make image` names them.
const (
	// ControllerImage is what manifests/deployment.yaml runs: Kubernetes
	// reads "sympozium-controller:dev" as this reference (and so does a
	// Docker engine building the Dockerfile with that tag).
	ControllerImage = "docker.io/library/sympozium-controller:dev"
	// TestAgentImage is the agent that does what kwok simulates from SIM_*
	// (hack/testagent), for a real node.
	TestAgentImage = "localhost/sympozium/testagent:dev"
	// PauseImage is the pod sandbox image of the real node (hack/testagent
	// in its pause mode), so that no image is pulled from a registry.
	PauseImage = "localhost/sympozium/pause:dev"
)

// Controller is the controller's image from its static binary: what the
// Dockerfile builds on distroless/static:nonroot (user 65532, no shell, the
// binary at /sympozium-controller as the entrypoint).
func Controller(binary []byte, name string) Image {
	return Image{
		Name:       name,
		Files:      append(NonRootFiles(), File{Path: "/sympozium-controller", Mode: 0o755, Data: binary}),
		User:       "65532:65532",
		Entrypoint: []string{"/sympozium-controller"},
		Env:        DefaultEnv,
	}
}

// TestAgent is the test agent's image (hack/testagent), user 65532.
func TestAgent(binary []byte, name string) Image {
	return Image{
		Name:       name,
		Files:      append(NonRootFiles(), File{Path: "/agent", Mode: 0o755, Data: binary}),
		User:       "65532:65532",
		Entrypoint: []string{"/agent"},
		Env:        DefaultEnv,
	}
}

// Pause is the pod sandbox image: the test agent in its pause mode (it
// reaps children and exits on SIGTERM or SIGINT), as root like the
// registry.k8s.io pause image.
func Pause(testAgentBinary []byte, name string) Image {
	return Image{
		Name:       name,
		Files:      []File{{Path: "/pause", Mode: 0o755, Data: testAgentBinary}},
		User:       "0:0",
		Entrypoint: []string{"/pause"},
		Env:        DefaultEnv,
	}
}
