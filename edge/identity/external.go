package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
	"github.com/coreos/go-oidc/v3/oidc"
)

// ExternalIssuer is a hospital's own identity provider whose access tokens
// the edge accepts. Its tokens carry no caregrid session, so they cannot
// be revoked here: they end when they expire (keep them short-lived).
type ExternalIssuer struct {
	// Issuer must equal the tokens' iss claim.
	Issuer string `json:"issuer"`
	// Audience must be among the tokens' aud.
	Audience string `json:"audience"`
	// JWKSURL serves the issuer's signing keys (fetched and refreshed on an unknown kid).
	JWKSURL string `json:"jwks_url"`
	// SubjectClaim names the claim with the caregrid subject (default "sub"):
	// for doctors and patients it must be the id of their record.
	SubjectClaim string `json:"subject_claim"`
	// RoleClaim names the claim (a string or a list of strings) whose values
	// map to caregrid roles.
	RoleClaim string `json:"role_claim"`
	// Roles maps claim values to roles; the first entry a token has wins, so
	// list the narrowest role first if a person may hold several.
	Roles []RoleMapping `json:"roles"`
	// Algorithms the issuer signs with (default RS256 and ES256).
	Algorithms []string `json:"algorithms"`
}

// RoleMapping maps one claim value to a caregrid role.
type RoleMapping struct {
	Value string `json:"value"`
	Role  string `json:"role"`
}

// LoadExternalIssuers reads a JSON list of ExternalIssuer and checks it.
func LoadExternalIssuers(path string) ([]ExternalIssuer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var out []ExternalIssuer
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("external issuers %s: %w", path, err)
	}
	for i, e := range out {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("external issuers %s, entry %d: %w", path, i+1, err)
		}
	}
	return out, nil
}

func (e ExternalIssuer) check() error {
	for name, raw := range map[string]string{"issuer": e.Issuer, "jwks_url": e.JWKSURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return fmt.Errorf("%s %q must be an https URL (http on loopback only)", name, raw)
		}
	}
	if e.Audience == "" || e.RoleClaim == "" || len(e.Roles) == 0 {
		return errors.New("audience, role_claim and roles are required")
	}
	for _, m := range e.Roles {
		if r, ok := messages.ParseRole(m.Role); !ok || r == messages.Role_ROLE_SERVICE {
			return fmt.Errorf("role %q for %q: want patient, doctor, receptionist or admin", m.Role, m.Value)
		}
	}
	return nil
}

// External accepts access tokens of configured external issuers.
type External struct {
	issuers map[string]*externalVerifier
}

type externalVerifier struct {
	cfg      ExternalIssuer
	verifier *oidc.IDTokenVerifier
}

// NewExternal builds the verifiers. Keys are fetched on first use.
func NewExternal(ctx context.Context, issuers []ExternalIssuer) (*External, error) {
	x := &External{issuers: map[string]*externalVerifier{}}
	for _, e := range issuers {
		if err := e.check(); err != nil {
			return nil, err
		}
		if e.SubjectClaim == "" {
			e.SubjectClaim = "sub"
		}
		algs := e.Algorithms
		if len(algs) == 0 {
			algs = []string{oidc.RS256, oidc.ES256}
		}
		keys := oidc.NewRemoteKeySet(ctx, e.JWKSURL)
		x.issuers[e.Issuer] = &externalVerifier{cfg: e, verifier: oidc.NewVerifier(e.Issuer, keys,
			&oidc.Config{ClientID: e.Audience, SupportedSigningAlgs: algs})}
	}
	return x, nil
}

// unverifiedIssuer reads iss from a JWT's payload, only to pick the
// verifier; the verifier then checks everything, iss included.
func unverifiedIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", false
	}
	return c.Issuer, true
}

func (x *External) Authenticate(token string) (edge.Principal, error) {
	iss, ok := unverifiedIssuer(token)
	v := x.issuers[iss]
	if !ok || v == nil {
		return edge.Principal{}, fmt.Errorf("%w: not from a configured issuer", edge.ErrUnauthenticated)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok, err := v.verifier.Verify(ctx, token)
	if err != nil {
		return edge.Principal{}, fmt.Errorf("%w: %v", edge.ErrUnauthenticated, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return edge.Principal{}, fmt.Errorf("%w: %v", edge.ErrUnauthenticated, err)
	}
	subject, _ := claims[v.cfg.SubjectClaim].(string)
	role := v.cfg.role(claims[v.cfg.RoleClaim])
	if subject == "" || role == messages.Role_ROLE_UNSPECIFIED {
		return edge.Principal{}, fmt.Errorf("%w: the token maps to no caregrid subject or role", edge.ErrUnauthenticated)
	}
	client, _ := claims["azp"].(string)
	if client == "" {
		client, _ = claims["client_id"].(string)
	}
	return edge.Principal{Subject: subject, Role: role, Client: client, Expiry: tok.Expiry}, nil
}

// role maps a claim (a string or a list) to the first configured role it has.
func (e ExternalIssuer) role(claim any) messages.Role {
	var values []string
	switch c := claim.(type) {
	case string:
		values = []string{c}
	case []any:
		for _, v := range c {
			if s, ok := v.(string); ok {
				values = append(values, s)
			}
		}
	}
	for _, m := range e.Roles {
		for _, v := range values {
			if v == m.Value {
				r, _ := messages.ParseRole(m.Role)
				return r
			}
		}
	}
	return messages.Role_ROLE_UNSPECIFIED
}
