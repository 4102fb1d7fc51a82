package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// readTar returns the regular files of a tar by name.
func readTar(t *testing.T, b []byte) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		headers[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		}
	}
	return files, headers
}

func blob(t *testing.T, files map[string][]byte, d descriptor) []byte {
	t.Helper()
	b, ok := files["blobs/sha256/"+hexOf(d.Digest)]
	if !ok {
		t.Fatalf("no blob %s", d.Digest)
	}
	if digest(b) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: digest %s, size %d (want %d)", d.Digest, digest(b), len(b), d.Size)
	}
	return b
}

func TestWriteLayout(t *testing.T) {
	var out bytes.Buffer
	img := Controller([]byte("\x7fELF binary"), ControllerImage)
	if err := Write(&out, img); err != nil {
		t.Fatal(err)
	}
	files, _ := readTar(t, out.Bytes())
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout: %s", files["oci-layout"])
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	m := index.Manifests[0]
	if m.Annotations[AnnotationImageName] != ControllerImage || m.Annotations[AnnotationRefName] != "dev" {
		t.Fatalf("index annotations %v", m.Annotations)
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(blob(t, files, m), &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %v", err)
	}
	var cfg struct {
		Config struct {
			User       string
			Entrypoint []string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blob(t, files, manifest.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/sympozium-controller" {
		t.Fatalf("config %+v", cfg.Config)
	}
	layer := blob(t, files, manifest.Layers[0])
	if cfg.RootFS.DiffIDs[0] != manifest.Layers[0].Digest {
		t.Fatalf("diff id %s, layer %s (an uncompressed layer is its own diff id)", cfg.RootFS.DiffIDs[0], manifest.Layers[0].Digest)
	}
	lf, lh := readTar(t, layer)
	if string(lf["sympozium-controller"]) != "\x7fELF binary" || lh["sympozium-controller"].Mode != 0o755 {
		t.Fatalf("binary missing or not executable: %+v", lh["sympozium-controller"])
	}
	if !strings.Contains(string(lf["etc/passwd"]), "nonroot:x:65532:65532") {
		t.Fatalf("/etc/passwd: %s", lf["etc/passwd"])
	}
	if lh["tmp/"].Mode != 0o1777 || lh["home/nonroot/"].Uid != 65532 {
		t.Fatalf("tmp %o, home uid %d", lh["tmp/"].Mode, lh["home/nonroot/"].Uid)
	}
	for _, name := range []string{"bin/sh", "bin/", "usr/"} {
		if _, ok := lh[name]; ok {
			t.Fatalf("the image holds %s; it must have no shell", name)
		}
	}

	// Reproducible: the same input gives the same bytes.
	var again bytes.Buffer
	if err := Write(&again, img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Fatal("two writes of one image differ")
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	for name, img := range map[string]Image{
		"no tag":        {Name: "docker.io/library/x"},
		"relative path": {Name: "x:1", Files: []File{{Path: "etc/passwd"}}},
		"twice":         {Name: "x:1", Files: []File{{Path: "/a"}, {Path: "/a"}}},
	} {
		if err := Write(io.Discard, img); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
