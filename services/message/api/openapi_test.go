package api

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Every route the server registers is documented in the OpenAPI file, and
// the file documents no route the server lacks.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	b, err := os.ReadFile("../../../api/openapi/message.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi file does not parse: %v", err)
	}
	routes := []string{"GET /healthz", "GET /readyz", "GET /metrics"} // served by package server
	for _, r := range (&Server{}).routes() {
		routes = append(routes, r.pattern)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	for _, r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not in the OpenAPI file", r)
		}
		delete(documented, r)
	}
	for r := range documented {
		t.Errorf("OpenAPI documents %s, which the server does not serve", r)
	}
}
