// Package buildinfo exposes what Go embedded in the binary about its own
// build, as the esignflow_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a gauge esignflow_build_info, always 1, labelled with
// the module version, the VCS revision (with "-dirty" for a modified tree)
// and the Go version: a dashboard shows which build each instance runs.
func Collector() prometheus.Collector {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			revision += "-dirty"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "esignflow_build_info", Help: "Always 1: the build this process runs.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	g.Set(1)
	return g
}
