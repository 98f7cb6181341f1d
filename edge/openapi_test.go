package edge

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

type operation struct {
	Roles     []string                   `json:"x-roles"`
	Responses map[string]json.RawMessage `json:"responses"`
}

var fiberParam = regexp.MustCompile(`:([a-z_]+)`)

// TestOpenAPIMatchesRoutes: every served route is documented with the roles
// the route table gives it, and nothing else is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	documented := map[string][]string{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s %s documents no responses", method, path)
			}
			roles := slices.Clone(op.Roles)
			sort.Strings(roles)
			documented[strings.ToUpper(method)+" "+path] = roles
		}
	}
	s := New(Config{})
	served := map[string][]string{}
	for _, r := range s.RouteTable() {
		var roles []string
		for _, role := range r.Roles {
			roles = append(roles, role.Name())
		}
		sort.Strings(roles)
		served[r.Method+" "+fiberParam.ReplaceAllString(r.Path, "{$1}")] = roles
	}
	// The Fiber app itself serves exactly the route table.
	for _, r := range s.App().GetRoutes(true) {
		if r.Method == "HEAD" || r.Path == "/" {
			continue
		}
		key := r.Method + " " + fiberParam.ReplaceAllString(r.Path, "{$1}")
		if _, ok := served[key]; !ok {
			t.Errorf("the app serves %s, which the route table does not list", key)
		}
	}
	for k, roles := range served {
		droles, ok := documented[k]
		if !ok {
			t.Errorf("%s is served but not in openapi.json", k)
			continue
		}
		if strings.Join(roles, ",") != strings.Join(droles, ",") {
			t.Errorf("%s: openapi.json x-roles %v, route table %v", k, droles, roles)
		}
	}
	for k := range documented {
		if _, ok := served[k]; !ok {
			t.Errorf("%s is in openapi.json but not served", k)
		}
	}
}
