package edge

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/valyala/fasthttp"
)

// fuzzAuth accepts "role:<name>" tokens, so that fuzzed requests reach the
// handlers of every route as every role.
type fuzzAuth struct{}

func (fuzzAuth) Authenticate(token string) (Principal, error) {
	name, ok := strings.CutPrefix(token, "role:")
	role, known := messages.ParseRole(name)
	if !ok || !known {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{Subject: "5f0e3c1a-0000-4000-8000-000000000001", Role: role}, nil
}

// fuzzServer is an edge with every route and no cluster: a request that
// passes every check of the edge ends in 503 cluster-unavailable, and
// anything else the edge answers itself.
func fuzzServer(t testing.TB) *Server {
	return New(Config{Auth: fuzzAuth{}, Documents: &Documents{Store: blob.Dir{Root: t.TempDir()}, MaxBytes: 1 << 20}})
}

// serve runs one raw request through the app's handler: no HTTP client
// cleans the input first.
func serve(s *Server, method, uri string, header map[string]string, body []byte) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	for k, v := range header {
		ctx.Request.Header.Set(k, v)
	}
	ctx.Request.SetBody(body)
	s.app.Handler()(&ctx)
	return &ctx.Response
}

// FuzzEveryRoute sends fuzzed paths, queries, headers and bodies to every
// route of the table, as each role: the edge never fails (500), and every
// refusal is a problem+json document.
func FuzzEveryRoute(f *testing.F) {
	s := fuzzServer(f)
	routes := s.RouteTable()
	for i, seed := range []struct {
		path, query, ifMatch, contentType string
		body                              []byte
	}{
		{"", "", "", "application/json", []byte(`{"idnp":"2005042129809","given_name":"Ion"}`)},
		{"", "cursor=\xff\xfe", "", "", nil},
		{"", "specialty=a%00b", "", "", nil},
		{"urn:uuid:5f0e3c1a-0000-4000-8000-000000000001", "", "", "", nil},
		{"", "", `"999"`, "application/merge-patch+json", []byte(`{"phone":"+37369000001"}`)},
		{"", "", "", "application/json", []byte(`null`)},
		{"", "", "", "application/json", []byte(`[]`)},
		{"", "", "", "application/json", []byte(`{"a":1,"a":2}`)},
		{"", "", "", "application/json", []byte("{\"reason\":\"x\\u0000y\"}")},
		{"", "", "", "application/json", []byte("{\"reason\":\"\xc3\x28\"}")},
		{"", "", "", "application/json", []byte(`{"quantity":30}`)},
		{"", "limit=0&from=2026-01-01T00:00:00Z&to=x", "", "", nil},
		{"%ff%00", "", "", "", nil},
		{"", "", "", "multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n\xff\r\n--b--\r\n")},
	} {
		f.Add(uint8(i), uint8(i%4), seed.path, seed.query, seed.ifMatch, seed.contentType, seed.body)
	}
	f.Fuzz(func(t *testing.T, routeIndex, roleIndex uint8, id, query, ifMatch, contentType string, body []byte) {
		rt := routes[int(routeIndex)%len(routes)]
		role := []string{"patient", "receptionist", "doctor", "admin"}[roleIndex%4]
		if id == "" {
			id = "5f0e3c1a-0000-4000-8000-000000000001"
		}
		path := strings.NewReplacer(":id", id, ":doctor", id, ":document", id).Replace(rt.Path)
		uri := path
		if query != "" {
			uri += "?" + query
		}
		header := map[string]string{"Authorization": "Bearer role:ROLE_" + strings.ToUpper(role)}
		if ifMatch != "" {
			header["If-Match"] = ifMatch
		}
		if contentType != "" {
			header["Content-Type"] = contentType
		}
		resp := serve(s, rt.Method, uri, header, body)
		status := resp.StatusCode()
		if status >= 500 && status != fasthttp.StatusServiceUnavailable {
			t.Fatalf("%s %q as %s: %d %s", rt.Method, uri, role, status, resp.Body())
		}
		if status >= 400 && string(resp.Header.ContentType()) != "application/problem+json" {
			t.Fatalf("%s %q as %s: %d with %s", rt.Method, uri, role, status, resp.Header.ContentType())
		}
		if status >= 400 {
			var p Problem
			if err := json.Unmarshal(resp.Body(), &p); err != nil || p.Status != status || !utf8.Valid(resp.Body()) {
				t.Fatalf("%s %q: the problem does not parse: %s", rt.Method, uri, resp.Body())
			}
		}
	})
}

// FuzzDecodeStrict: a body decodeStrict accepts is valid UTF-8, a JSON
// object with no key twice and no NUL, that encoding/json reads the same.
func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `null`, `[{}]`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":1}]}`,
		"{\"a\":\"\\u0000\"}", "{\"a\":\"\xff\"}", `{"a":"x"} {}`, `{"a":`, `{"a":[1,2,{"c":{"d":[]}}]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m map[string]any
		err := decodeStrict(body, &m)
		if err == nil {
			if !utf8.Valid(body) || bytes.Contains(body, []byte(`\u0000`)) && !strings.Contains(string(body), `\\u0000`) {
				t.Fatalf("accepted %q", body)
			}
			var again map[string]any
			if err := json.Unmarshal(body, &again); err != nil || again == nil {
				t.Fatalf("accepted %q, which encoding/json reads as %v, %v", body, again, err)
			}
			return
		}
		if _, ok := err.(*Problem); !ok {
			t.Fatalf("%q: %T %v, want a *Problem", body, err, err)
		}
	})
}
