package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The image is a scratch image with the static binary: skopeo reads its
// layout and config, and the binary extracted from its one layer runs.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := os.Getenv("OWL_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "owl")
		build := exec.Command("go", "build", "-o", bin, "../../cmd/owl")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "PATH="+os.Getenv("PATH")+":/usr/local/go/bin")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build owl: %v\n%s", err, out)
		}
	}
	out := filepath.Join(dir, "image")
	if err := build(bin, out, "amd64", "test"); err != nil {
		t.Fatal(err)
	}

	if _, err := exec.LookPath("skopeo"); err != nil {
		if os.Getenv("OWL_E2E") == "require" {
			t.Fatal("skopeo missing (apt-get install skopeo)")
		}
		t.Skip("skopeo missing (apt-get install skopeo)")
	}
	js, err := exec.Command("skopeo", "inspect", "oci:"+out+":test").Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var info struct {
		Architecture, Os string
		Layers           []string
	}
	if err := json.Unmarshal(js, &info); err != nil {
		t.Fatal(err)
	}
	if info.Architecture != "amd64" || info.Os != "linux" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect: %s", js)
	}
	cfgJS, err := exec.Command("skopeo", "inspect", "--config", "oci:"+out+":test").Output()
	if err != nil {
		t.Fatalf("skopeo inspect --config: %v", err)
	}
	var cfg struct {
		Config struct{ Entrypoint, Cmd []string }
	}
	if err := json.Unmarshal(cfgJS, &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/owl" || len(cfg.Config.Cmd) == 0 || cfg.Config.Cmd[0] != "agent" {
		t.Errorf("config: %s", cfgJS)
	}

	// Extract the filesystem and run the binary from it.
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("index: %+v, %v", m, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	tr := tar.NewReader(mutate.Extract(img))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		path := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(f, tr)
			f.Close()
		}
	}
	if strings.Join(names, " ") != "etc etc/owl tmp owl" {
		t.Errorf("files in the image: %v, want only the binary and its directories", names)
	}
	got, err := exec.Command(filepath.Join(root, "owl"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(got), "owl ") {
		t.Errorf("owl --version from the image: %q, %v", got, err)
	}
}
