package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Private claims of caregrid's access tokens. The edge reads them; sid ties
// a token to its session so that revoking the session revokes the token.
const (
	ClaimRole    = "role"
	ClaimSession = "sid"
)

// storage is the provider's op.Storage on PostgreSQL/CockroachDB. Every
// token belongs to a session; token ids are "<session id>.<random>", so a
// revocation request for any token can find, and end, its session.
type storage struct {
	db   *persistence.DB
	keys *Keys
	cfg  *Config
}

var _ op.Storage = (*storage)(nil)
var _ op.ClientCredentialsStorage = (*storage)(nil)
var _ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
var _ op.CanSetUserinfoFromRequest = (*storage)(nil)
var _ op.CanTerminateSessionFromRequest = (*storage)(nil)

// authRequest is a stored authorization request.
type authRequest struct {
	row persistence.AuthRequest
	req oidc.AuthRequest
	api string
}

func (a *authRequest) GetID() string         { return a.row.ID }
func (a *authRequest) GetACR() string        { return "" }
func (a *authRequest) GetAMR() []string      { return a.row.AMR }
func (a *authRequest) GetAudience() []string { return []string{a.row.ClientID, a.api} }
func (a *authRequest) GetAuthTime() time.Time {
	return a.row.AuthTime
}
func (a *authRequest) GetClientID() string { return a.row.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.row.AccountID }
func (a *authRequest) Done() bool                         { return a.row.Done }
func (a *authRequest) sessionID() string                  { return a.row.SessionID }

// refreshRequest is a refresh token's grant.
type refreshRequest struct {
	rt     persistence.RefreshToken
	scopes []string
}

func (r *refreshRequest) GetAMR() []string            { return r.rt.Session.AMR }
func (r *refreshRequest) GetAudience() []string       { return r.rt.Audience }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.rt.Session.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.rt.Session.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.rt.Session.AccountID }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }
func (r *refreshRequest) sessionID() string           { return r.rt.Session.ID }

// serviceRequest is a client-credentials grant; it gets a session of its
// own, so its tokens can be revoked like any other.
type serviceRequest struct {
	session  string
	subject  string
	audience []string
	scopes   []string
}

func (s *serviceRequest) GetSubject() string    { return s.subject }
func (s *serviceRequest) GetAudience() []string { return s.audience }
func (s *serviceRequest) GetScopes() []string   { return s.scopes }
func (s *serviceRequest) sessionID() string     { return s.session }

type sessionBound interface{ sessionID() string }

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// sessionOfTokenID reads the session id out of a token id.
func sessionOfTokenID(id string) (string, bool) {
	sid, _, ok := strings.Cut(id, ".")
	if !ok || uuid.Validate(sid) != nil {
		return "", false
	}
	return sid, true
}

func notFound(err error) bool { return errors.Is(err, persistence.ErrNotFound) }

func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	c, err := s.db.ClientByID(ctx, req.ClientID)
	if notFound(err) {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if err != nil {
		return nil, err
	}
	if c.Kind == "public" && (req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256) {
		return nil, oidc.ErrInvalidRequest().WithDescription("public clients must use PKCE with code_challenge_method=S256")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		// Logins live in no browser cookie here, so there is never a session to reuse silently.
		return nil, oidc.ErrLoginRequired()
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	row := persistence.AuthRequest{ID: uuid.NewString(), ClientID: req.ClientID, Request: raw, ExpiresAt: s.cfg.now().Add(s.cfg.LoginTimeout)}
	if err := s.db.CreateAuthRequest(ctx, row); err != nil {
		return nil, err
	}
	return &authRequest{row: row, req: *req, api: s.cfg.Audience}, nil
}

func (s *storage) authRequest(row persistence.AuthRequest, err error) (*authRequest, error) {
	if notFound(err) {
		return nil, oidc.ErrInvalidGrant().WithDescription("unknown or expired authorization request")
	}
	if err != nil {
		return nil, err
	}
	a := &authRequest{row: row, api: s.cfg.Audience}
	if err := json.Unmarshal(row.Request, &a.req); err != nil {
		return nil, err
	}
	return a, nil
}

func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	if uuid.Validate(id) != nil {
		return nil, oidc.ErrInvalidRequest().WithDescription("malformed authorization request id")
	}
	return s.authRequest(s.db.AuthRequestByID(ctx, id))
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	return s.authRequest(s.db.AuthRequestByCode(ctx, code))
}

func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	return s.db.SaveAuthCode(ctx, id, code)
}

func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error {
	return s.db.DeleteAuthRequest(ctx, id)
}

func (s *storage) newAccessTokenID(request op.TokenRequest) (string, time.Time, error) {
	b, ok := request.(sessionBound)
	if !ok || b.sessionID() == "" {
		return "", time.Time{}, oidc.ErrServerError().WithDescription("token request without a session")
	}
	return b.sessionID() + "." + randomToken()[:16], s.cfg.now().Add(s.cfg.AccessTokenTTL), nil
}

// accountMayHaveTokens checks the account a token is for as it is now, at
// every issue: a code exchanged, a refresh, client credentials. Disabled,
// locked, unconfirmed or deleted since the sign-in: no token.
func (s *storage) accountMayHaveTokens(ctx context.Context, subject string) error {
	acct, err := s.db.AccountByID(ctx, subject)
	if notFound(err) {
		return oidc.ErrInvalidGrant().WithDescription("the account no longer exists")
	}
	if err != nil {
		return err
	}
	if why := unusable(acct, s.cfg.now()); why != "" {
		return oidc.ErrInvalidGrant().WithDescription("the account may not sign in: %s", why)
	}
	return nil
}

func (s *storage) CreateAccessToken(ctx context.Context, request op.TokenRequest) (string, time.Time, error) {
	if err := s.accountMayHaveTokens(ctx, request.GetSubject()); err != nil {
		return "", time.Time{}, err
	}
	return s.newAccessTokenID(request)
}

func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	if err := s.accountMayHaveTokens(ctx, request.GetSubject()); err != nil {
		return "", "", time.Time{}, err
	}
	id, exp, err := s.newAccessTokenID(request)
	if err != nil {
		return "", "", time.Time{}, err
	}
	var parent []byte
	if current != "" {
		parent = hashToken(current)
	}
	refresh := randomToken()
	sid := request.(sessionBound).sessionID()
	err = s.db.IssueRefreshToken(ctx, hashToken(refresh), sid, request.GetScopes(), request.GetAudience(), parent)
	switch {
	case errors.Is(err, persistence.ErrRefreshReused):
		s.cfg.Events.SessionEnded(ctx, sid, request.GetSubject(), "refresh token reused")
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the refresh token was already used; the session has been ended")
	case errors.Is(err, persistence.ErrSessionEnded):
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the session has ended")
	case err != nil:
		return "", "", time.Time{}, err
	}
	return id, refresh, exp, nil
}

func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	rt, err := s.db.RefreshTokenByHash(ctx, hashToken(token))
	if notFound(err) {
		return nil, op.ErrInvalidRefreshToken
	}
	if err != nil {
		return nil, err
	}
	if rt.UsedAt != nil {
		// A spent token again: someone holds a copy. End the session, so
		// neither the thief nor the owner can go on with it.
		if revoked, err := s.db.RevokeSession(ctx, rt.Session.ID, "refresh token reused"); err != nil {
			return nil, err
		} else if revoked {
			s.cfg.Events.SessionEnded(ctx, rt.Session.ID, rt.Session.AccountID, "refresh token reused")
		}
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was already used; the session has been ended")
	}
	if !rt.Session.Live(s.cfg.now()) {
		return nil, oidc.ErrInvalidGrant().WithDescription("the session has ended")
	}
	return &refreshRequest{rt: rt, scopes: rt.Scopes}, nil
}

func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	ids, err := s.db.RevokeAccountSessions(ctx, userID, clientID, "logout")
	for _, id := range ids {
		s.cfg.Events.SessionEnded(ctx, id, userID, "logout")
	}
	return err
}

func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	if req.IDTokenHintClaims != nil && req.IDTokenHintClaims.SessionID != "" {
		sess, err := s.db.SessionByID(ctx, req.IDTokenHintClaims.SessionID)
		if err != nil && !notFound(err) {
			return "", err
		}
		if err == nil && sess.AccountID == req.UserID {
			if revoked, err := s.db.RevokeSession(ctx, sess.ID, "logout"); err != nil {
				return "", err
			} else if revoked {
				s.cfg.Events.SessionEnded(ctx, sess.ID, sess.AccountID, "logout")
			}
			return req.RedirectURI, nil
		}
	}
	if req.UserID == "" {
		return req.RedirectURI, nil
	}
	return req.RedirectURI, s.TerminateSession(ctx, req.UserID, req.ClientID)
}

func (s *storage) RevokeToken(ctx context.Context, tokenOrID, _, clientID string) *oidc.Error {
	sid, ok := sessionOfTokenID(tokenOrID)
	if !ok {
		return nil // RFC 7009: an unknown token is not an error
	}
	sess, err := s.db.SessionByID(ctx, sid)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if sess.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("the token was issued to another client")
	}
	revoked, err := s.db.RevokeSession(ctx, sid, "revoked")
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if revoked {
		s.cfg.Events.SessionEnded(ctx, sid, sess.AccountID, "token revoked")
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	rt, err := s.db.RefreshTokenByHash(ctx, hashToken(token))
	if notFound(err) || (err == nil && rt.Session.ClientID != clientID) {
		return "", "", op.ErrInvalidRefreshToken
	}
	if err != nil {
		return "", "", err
	}
	return rt.Session.AccountID, rt.Session.ID + ".refresh", nil
}

func (s *storage) SigningKey(ctx context.Context) (op.SigningKey, error) { return s.keys.Signing(ctx) }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(ctx context.Context) ([]op.Key, error) { return s.keys.Published(ctx) }

func (s *storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.db.ClientByID(ctx, id)
	if notFound(err) {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if err != nil {
		return nil, err
	}
	return &client{row: c, cfg: s.cfg}, nil
}

func (s *storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	c, err := s.db.ClientByID(ctx, id)
	if err != nil && !notFound(err) {
		return err
	}
	if notFound(err) || c.SecretHash == nil || subtle.ConstantTimeCompare(c.SecretHash, hashToken(secret)) != 1 {
		return oidc.ErrInvalidClient().WithDescription("wrong client id or secret")
	}
	return nil
}

func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	c, err := s.db.ClientByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Kind != "service" || c.AccountID == "" {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("only service clients may use client credentials")
	}
	return &client{row: c, cfg: s.cfg}, nil
}

func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, err := s.db.ClientByID(ctx, id)
	if err != nil {
		return nil, err
	}
	acct, err := s.db.AccountByID(ctx, c.AccountID)
	if err != nil {
		return nil, err
	}
	if acct.Disabled {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("the service account is disabled")
	}
	now := s.cfg.now()
	sess := persistence.Session{ID: uuid.NewString(), AccountID: acct.ID, ClientID: id, AMR: []string{"client_secret"},
		AuthTime: now, ExpiresAt: now.Add(s.cfg.AccessTokenTTL)}
	if err := s.db.CreateSession(ctx, sess); err != nil {
		return nil, err
	}
	return &serviceRequest{session: sess.ID, subject: acct.ID, audience: []string{id, s.cfg.Audience}, scopes: allowedScopes(scopes)}, nil
}

// allowedScopes keeps the scopes caregrid knows; others are dropped, not refused.
func allowedScopes(scopes []string) []string {
	var out []string
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess:
			out = append(out, sc)
		}
	}
	return out
}

func (s *storage) setUserinfo(ctx context.Context, ui *oidc.UserInfo, subject string, scopes []string) error {
	acct, err := s.db.AccountByID(ctx, subject)
	if err != nil {
		return err
	}
	ui.Subject = acct.ID
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			ui.PreferredUsername = acct.Username
		case oidc.ScopeEmail:
			ui.Email = acct.Email
		}
	}
	ui.AppendClaims(ClaimRole, acct.Role)
	return nil
}

func (s *storage) SetUserinfoFromScopes(ctx context.Context, ui *oidc.UserInfo, userID, _ string, scopes []string) error {
	return s.setUserinfo(ctx, ui, userID, scopes)
}

func (s *storage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, request op.IDTokenRequest, scopes []string) error {
	if err := s.setUserinfo(ctx, ui, request.GetSubject(), scopes); err != nil {
		return err
	}
	if b, ok := request.(sessionBound); ok {
		ui.AppendClaims(ClaimSession, b.sessionID())
	}
	return nil
}

// liveSession checks that a token id's session is live.
func (s *storage) liveSession(ctx context.Context, tokenID string) error {
	sid, ok := sessionOfTokenID(tokenID)
	if !ok {
		return oidc.ErrInvalidRequest().WithDescription("unknown token")
	}
	sess, err := s.db.SessionByID(ctx, sid)
	if notFound(err) || (err == nil && !sess.Live(s.cfg.now())) {
		return oidc.ErrAccessDenied().WithDescription("the session has ended")
	}
	return err
}

func (s *storage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	if err := s.liveSession(ctx, tokenID); err != nil {
		return err
	}
	return s.setUserinfo(ctx, ui, subject, []string{oidc.ScopeProfile, oidc.ScopeEmail})
}

func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if err := s.liveSession(ctx, tokenID); err != nil {
		return nil // inactive: Active stays false
	}
	ui := new(oidc.UserInfo)
	if err := s.setUserinfo(ctx, ui, subject, []string{oidc.ScopeProfile, oidc.ScopeEmail}); err != nil {
		return err
	}
	resp.SetUserInfo(ui)
	resp.ClientID = clientID
	resp.Active = true
	return nil
}

func (s *storage) privateClaims(ctx context.Context, subject, sid string) (map[string]any, error) {
	acct, err := s.db.AccountByID(ctx, subject)
	if err != nil {
		return nil, err
	}
	claims := map[string]any{ClaimRole: acct.Role}
	if sid != "" {
		claims[ClaimSession] = sid
	}
	return claims, nil
}

func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, _ string, _ []string) (map[string]any, error) {
	return s.privateClaims(ctx, userID, "")
}

func (s *storage) GetPrivateClaimsFromRequest(ctx context.Context, request op.TokenRequest, _ []string) (map[string]any, error) {
	sid := ""
	if b, ok := request.(sessionBound); ok {
		sid = b.sessionID()
	}
	return s.privateClaims(ctx, request.GetSubject(), sid)
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("identity: JWT profile client authentication is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("identity: the JWT profile grant is not supported")
}

func (s *storage) Health(ctx context.Context) error { return s.db.Ping(ctx) }

// client is a registered client as the provider sees it.
type client struct {
	row persistence.Client
	cfg *Config
}

func (c *client) GetID() string                    { return c.row.ID }
func (c *client) RedirectURIs() []string           { return c.row.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.row.PostLogoutRedirectURIs }
func (c *client) ApplicationType() op.ApplicationType {
	if c.row.Kind == "public" {
		return op.ApplicationTypeNative // loopback and custom-scheme redirects, no secret
	}
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.row.Kind == "public" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	if c.row.Kind == "service" {
		return nil
	}
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	if c.row.Kind == "service" {
		return []oidc.GrantType{oidc.GrantTypeClientCredentials}
	}
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string           { return c.cfg.loginPath() + "?id=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.cfg.AccessTokenTTL }
func (c *client) DevMode() bool                       { return c.cfg.Insecure }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
