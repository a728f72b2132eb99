package realnode

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// dockerfileStage is what the Dockerfile declares about the image.
type dockerfileStage struct {
	cmds       []string          // Go main packages its build stage builds (./cmd/x)
	files      []string          // paths its runtime stage copies in
	user       string            // USER
	entrypoint []string          // ENTRYPOINT (exec form)
	labels     map[string]string // LABEL, ${ARG} unexpanded
}

// TestImageMatchesDockerfile builds the image with hack/image.sh (podman,
// FROM scratch) and checks it against ./Dockerfile, which users with Docker
// build: same binaries (same Go main packages, static), same user,
// entrypoint and labels, and nothing else in the layers but the CA bundle.
func TestImageMatchesDockerfile(t *testing.T) {
	requireHost(t, "podman")
	root := repoRoot(t)
	want := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	script, err := os.ReadFile(filepath.Join(root, "hack", "image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if got := goBuildCmds(string(script)); !slices.Equal(got, want.cmds) {
		t.Errorf("hack/image.sh builds %v, the Dockerfile builds %v", got, want.cmds)
	}

	archive := buildImage(t)
	img := readArchive(t, archive)

	if img.config.Config.User != want.user {
		t.Errorf("image user %q, Dockerfile USER %q", img.config.Config.User, want.user)
	}
	if !strings.HasPrefix(want.user, "65532") {
		t.Errorf("Dockerfile USER %q: want non-root 65532", want.user)
	}
	if !slices.Equal(img.config.Config.Entrypoint, want.entrypoint) {
		t.Errorf("image entrypoint %q, Dockerfile %q", img.config.Config.Entrypoint, want.entrypoint)
	}
	for k, v := range want.labels {
		got, ok := img.config.Config.Labels[k]
		switch {
		case !ok:
			t.Errorf("image lacks label %s", k)
		case !strings.Contains(v, "${") && got != v:
			t.Errorf("label %s = %q, Dockerfile says %q", k, got, v)
		case got == "" || got == "dev" || got == "unknown":
			t.Errorf("label %s = %q: hack/image.sh must set it", k, got)
		}
	}
	for _, k := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source"} {
		if _, ok := want.labels[k]; !ok {
			t.Errorf("Dockerfile lacks OCI label %s", k)
		}
	}

	var gotFiles []string
	for p := range img.files {
		gotFiles = append(gotFiles, p)
	}
	sort.Strings(gotFiles)
	if !slices.Equal(gotFiles, want.files) {
		t.Errorf("image files %v, Dockerfile copies %v", gotFiles, want.files)
	}
	var mains []string
	for _, p := range want.files {
		if !strings.HasPrefix(p, "/usr/local/bin/") {
			continue
		}
		f, ok := img.files[p]
		if !ok {
			continue
		}
		if f.mode&0o111 == 0 {
			t.Errorf("%s is not executable (mode %o)", p, f.mode)
		}
		ef, err := elf.NewFile(bytes.NewReader(f.data))
		if err != nil {
			t.Errorf("%s is not an ELF binary: %v", p, err)
			continue
		}
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (no libc in a FROM scratch image)", p)
			}
		}
		bi, err := buildinfo.Read(bytes.NewReader(f.data))
		if err != nil {
			t.Errorf("%s: no Go build info: %v", p, err)
			continue
		}
		if v := setting(bi, "CGO_ENABLED"); v != "0" {
			t.Errorf("%s built with CGO_ENABLED=%q", p, v)
		}
		if v := setting(bi, "-trimpath"); v != "true" {
			t.Errorf("%s built without -trimpath", p)
		}
		mains = append(mains, "./"+strings.TrimPrefix(bi.Path, bi.Main.Path+"/"))
	}
	sort.Strings(mains)
	if !slices.Equal(mains, want.cmds) {
		t.Errorf("image binaries are the main packages %v, the Dockerfile builds %v", mains, want.cmds)
	}
	t.Logf("image %s: %d MiB archive, user %s, entrypoint %v, labels %v",
		archive, fileMiB(t, archive), img.config.Config.User, img.config.Config.Entrypoint, img.config.Config.Labels)
}

func setting(bi *buildinfo.BuildInfo, key string) string {
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

func fileMiB(t testing.TB, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size() >> 20
}

var cmdPkg = regexp.MustCompile(`\./cmd/[a-z0-9_-]+`)

// goBuildCmds lists the ./cmd/x packages named on the go build command of
// a Dockerfile or script (continuation lines joined).
func goBuildCmds(s string) []string {
	s = strings.ReplaceAll(s, "\\\n", " ")
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, "go build") {
			continue
		}
		out = append(out, cmdPkg.FindAllString(line, -1)...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// parseDockerfile reads the build stage's main packages and the runtime
// stage (from the last FROM): COPY destinations, USER, ENTRYPOINT, LABEL.
func parseDockerfile(t testing.TB, p string) dockerfileStage {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	d := dockerfileStage{cmds: goBuildCmds(text), labels: map[string]string{}}
	joined := strings.ReplaceAll(text, "\\\n", " ")
	var stage []string
	sc := bufio.NewScanner(strings.NewReader(joined))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			stage = nil
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			stage = append(stage, line)
		}
	}
	if len(stage) == 0 || stage[0] != "FROM scratch" {
		t.Fatalf("Dockerfile's runtime stage starts %q, want FROM scratch", stage[:min(1, len(stage))])
	}
	label := regexp.MustCompile(`([a-z0-9.]+)="([^"]*)"`)
	for _, line := range stage[1:] {
		f := strings.Fields(line)
		switch f[0] {
		case "USER":
			d.user = f[1]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "ENTRYPOINT"))), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT must be the exec form: %v", err)
			}
		case "LABEL":
			for _, m := range label.FindAllStringSubmatch(line, -1) {
				d.labels[m[1]] = m[2]
			}
		case "COPY":
			args := f[1:]
			if strings.HasPrefix(args[0], "--from=") {
				args = args[1:]
			}
			dst := args[len(args)-1]
			for _, src := range args[:len(args)-1] {
				if strings.HasSuffix(dst, "/") {
					d.files = append(d.files, dst+path.Base(src))
				} else {
					d.files = append(d.files, dst)
				}
			}
		case "ARG":
		default:
			t.Errorf("Dockerfile runtime stage: %q is not checked by this test; extend it", f[0])
		}
	}
	sort.Strings(d.files)
	return d
}

type imageFile struct {
	mode int64
	data []byte
}

type archiveImage struct {
	config struct {
		Config struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		} `json:"config"`
	}
	files map[string]imageFile
}

// readArchive reads a docker-archive (manifest.json, the config, the layer
// tars) and returns the config and the regular files of the merged layers.
func readArchive(t testing.TB, p string) archiveImage {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			entries[path.Clean(h.Name)] = b
		}
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) == 0 {
		t.Fatalf("%s: no docker-archive manifest.json: %v", p, err)
	}
	var img archiveImage
	if err := json.Unmarshal(entries[path.Clean(manifest[0].Config)], &img.config); err != nil {
		t.Fatalf("%s: config %s: %v", p, manifest[0].Config, err)
	}
	img.files = map[string]imageFile{}
	for _, l := range manifest[0].Layers {
		if err := readLayer(entries[path.Clean(l)], img.files); err != nil {
			t.Fatalf("%s: layer %s: %v", p, l, err)
		}
	}
	return img
}

func readLayer(b []byte, files map[string]imageFile) error {
	var r io.Reader = bytes.NewReader(b)
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := "/" + strings.TrimPrefix(path.Clean(h.Name), "/")
		if base := path.Base(name); strings.HasPrefix(base, ".wh.") {
			delete(files, path.Join(path.Dir(name), strings.TrimPrefix(base, ".wh.")))
			continue
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[name] = imageFile{mode: h.Mode, data: data}
	}
}

// archiveTags lists the RepoTags of a docker-archive's manifest.json.
func archiveTags(t testing.TB, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no manifest.json: %v", p, err)
		}
		if path.Clean(h.Name) != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatalf("%s: manifest.json: %v", p, err)
		}
		var tags []string
		for _, e := range m {
			tags = append(tags, e.RepoTags...)
		}
		return tags
	}
}
