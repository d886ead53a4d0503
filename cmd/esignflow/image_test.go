package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ignored reports whether .dockerignore's patterns exclude path (a
// slash-separated path from the repository root), with Docker's rules
// narrowed to what the file uses: a pattern excludes what it matches and
// everything under it; a leading "**/" matches at any depth.
func ignored(patterns []string, path string) bool {
	parts := strings.Split(path, "/")
	for _, pat := range patterns {
		pat = strings.Trim(pat, "/")
		anyDepth := strings.HasPrefix(pat, "**/")
		pat = strings.TrimPrefix(pat, "**/")
		n := strings.Count(pat, "/") + 1
		for start := 0; start+n <= len(parts); start++ {
			if start > 0 && !anyDepth {
				break
			}
			if ok, _ := filepath.Match(pat, strings.Join(parts[start:start+n], "/")); ok {
				return true
			}
		}
	}
	return false
}

// The build context leaves out secrets, binaries, history and caches, and
// keeps what the build needs.
func TestDockerignore(t *testing.T) {
	raw, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, out := range []string{".esignflow/secrets/sim", ".esignflow/kafka/x.log", "esignflow", ".git/HEAD", ".cache/kafka/libs/kafka.jar",
		"interop/java/target/classes/A.class", "interop/js/node_modules/kafkajs/index.js", "deploy/secrets/sim", "cmd/esignflow/esignflow.test"} {
		if !ignored(patterns, out) {
			t.Errorf("%s goes into the build context", out)
		}
	}
	for _, in := range []string{"go.mod", "go.sum", "cmd/esignflow/main.go", "schemas/SigningRequest.avsc", "provider/sim/sim.go", "internal/stack/stack.go"} {
		if ignored(patterns, in) {
			t.Errorf("%s is left out of the build context, and the build needs it", in)
		}
	}
}

// Every path a compose service writes is on a named volume, and the
// esignflow ones are directories the image creates for its nonroot user.
func TestComposeStateOnVolumes(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	onVolume := func(service, path string) {
		t.Helper()
		for _, v := range doc.Services[service].Volumes {
			name, mount, _ := strings.Cut(v, ":")
			if _, named := doc.Volumes[name]; named && (path == mount || strings.HasPrefix(path, mount+"/")) {
				return
			}
		}
		t.Errorf("%s writes %s, which is on no named volume", service, path)
	}
	flag := func(service, name string) string {
		cmd := doc.Services[service].Command
		for i, a := range cmd {
			if a == "--"+name && i+1 < len(cmd) {
				return cmd[i+1]
			}
		}
		t.Fatalf("%s has no --%s", service, name)
		return ""
	}
	onVolume("kafka", doc.Services["kafka"].Environment["KAFKA_LOG_DIRS"])
	onVolume("redis", "/data")
	archive := flag("sink", "archive-dir")
	onVolume("sink", archive)
	state := flag("sim", "state-file")
	onVolume("sim", state)
	// The image must create them (Docker copies the directory's ownership
	// into a fresh named volume), under the path the Dockerfile prepares.
	for _, dir := range []string{archive, filepath.Dir(state)} {
		rel := strings.TrimPrefix(dir, "/var/lib/esignflow/")
		if rel == dir || !strings.Contains(string(dockerfile), "/out/data/"+rel) {
			t.Errorf("the Dockerfile does not create %s for the nonroot user", dir)
		}
	}
}
