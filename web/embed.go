// Package web is the imcluster web chat page (plain TypeScript, HTML and
// CSS on the TypeScript SDK in sdk/ts), embedded for `imctl web`.
//
// The page's compiled JavaScript is committed in dist/ so that a clean
// clone builds imctl without Node: after changing src/ or sdk/ts/src, run
// web/build.sh (test/browser's TestWebDistUpToDate fails until then).
package web

import (
	"embed"
	"io/fs"
)

//go:embed index.html style.css sample.svg dist
var files embed.FS

// Files returns the page's static files: index.html at the root.
func Files() fs.FS { return files }
