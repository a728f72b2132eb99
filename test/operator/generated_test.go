package operator

import (
	"path/filepath"
	"testing"
)

// The committed generated files (deepcopy, CRD, RBAC and their copies in
// the chart) match the markers: CI fails when someone changed api/ or an
// RBAC marker without running make manifests. The check generates into a
// scratch copy; the working tree is not touched. The first run builds
// controller-gen from hack/tools/controller-gen (with a cold Go build
// cache about a minute on a quiet machine, over two under load).
func TestGeneratedFilesUpToDate(t *testing.T) {
	out, err := runCmdWithin(buildTimeout, nil, "", "bash", filepath.Join(root, "hack", "tools", "controller-gen", "manifests.sh"), "check")
	if err != nil {
		t.Fatalf("generated files are stale or controller-gen failed: %v\n%s", err, out)
	}
}
