// Command image builds owl's OCI image without a container daemon: a
// scratch base, one layer with the static binary at /owl and the agent's
// default config directory, written as an OCI image layout (a directory
// skopeo, podman and registries' tools read: skopeo copy oci:DIR
// docker://REGISTRY/owl:TAG pushes it).
//
//	go run ./deploy/image -bin owl -out bin/image -arch amd64   (make image)
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	bin := flag.String("bin", "owl", "the static owl binary")
	out := flag.String("out", "bin/image", "OCI layout directory to write (replaced)")
	arch := flag.String("arch", "amd64", "the binary's architecture")
	tag := flag.String("tag", "latest", "the image's tag (org.opencontainers.image.ref.name)")
	flag.Parse()
	if err := build(*bin, *out, *arch, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// epoch is every file's time and the image's: the same binary gives the
// same image digest.
var epoch = time.Unix(0, 0).UTC()

// build writes the image of the binary at bin to an OCI layout at out.
func build(bin, out, arch, tag string) error {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"etc/", "etc/owl/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "owl", Mode: 0o755, Size: int64(len(exe)), ModTime: epoch}); err != nil {
		return err
	}
	if _, err := tw.Write(exe); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "owl deploy/image: /owl"}})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = arch, "linux", v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/owl"}
	cf.Config.Cmd = []string{"agent", "--config", "/etc/owl/agent.yaml"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source":      "https://github.com/owlbpf/owl",
		"org.opencontainers.image.description": "owl: eBPF security and language tracing tools; owl agent",
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
}
