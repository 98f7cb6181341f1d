// Package client is how an internal service (a pharmacy system, a lab
// import, a billing job) talks to caregrid: it joins the cluster as a
// client over the remoting's mutual TLS with the service's own
// certificate, gets its access token by the OAuth client-credentials
// grant, and calls the grains with typed methods.
//
// The grains prove every call (actors/proof): the certificate names the
// service's OAuth client (cluster.ServiceName), the token must be that
// client's own, and the service's role decides what it may do, exactly as
// over HTTP. A service cannot speak for a user, cannot write the audit
// trail, and its lifecycle messages to the cluster's actors are dropped.
//
// cmd/caregrid-pharmacy is a runnable example.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Config says how to reach the cluster and who the service is.
type Config struct {
	// ClusterName is the cluster's --cluster-name.
	ClusterName string
	// Members are remoting addresses (host:port) of the members (their
	// --cluster-peers); or Consul finds them.
	Members []string
	Consul  *cluster.Consul
	// Host is the address this client listens on for the members' replies
	// (they dial back); it must be reachable from them. Default 127.0.0.1.
	Host string
	// TLS is the service's certificate, for ServiceName(ClientID), and the
	// cluster's CA.
	TLS cluster.TLS
	// TokenURL is the token endpoint (<issuer>/oauth/token).
	TokenURL string
	// ClientID and ClientSecret are the service client's credentials
	// (`caregrid admin client create --kind service`).
	ClientID, ClientSecret string
	// Timeout bounds one call, retries included (default 5 s).
	Timeout time.Duration
	// Purpose is the HL7 PurposeOfUse code sent with every call (default TREAT).
	Purpose string
	Logger  *slog.Logger
}

// Client is a connected service. It is safe for concurrent use.
type Client struct {
	node    *cluster.Node
	tokens  oauth2.TokenSource
	timeout time.Duration
	purpose string
}

// Dial joins the cluster and fetches a first token, so that wrong
// credentials or certificates fail here rather than on the first call.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.ClientID == "" || cfg.TokenURL == "" {
		return nil, errors.New("client: ClientID and TokenURL are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = cluster.DefaultTimeout
	}
	if cfg.Purpose == "" {
		cfg.Purpose = "TREAT"
	}
	cc := clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: cfg.TokenURL,
		AuthStyle: oauth2.AuthStyleInHeader}
	// ReuseTokenSource refreshes the token shortly before it expires.
	tokens := oauth2.ReuseTokenSource(nil, cc.TokenSource(context.Background()))
	if _, err := tokens.Token(); err != nil {
		return nil, fmt.Errorf("client: token for %s: %w", cfg.ClientID, err)
	}
	node, err := cluster.Start(ctx, cluster.Config{Name: cfg.ClusterName, Host: cfg.Host, TLS: &cfg.TLS,
		Peers: cfg.Members, Consul: cfg.Consul, Client: true, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if node.Self.Kind != cluster.PeerService || node.Self.Service != cfg.ClientID {
		node.Stop(false)
		return nil, fmt.Errorf("client: the certificate is a %s's, not the service %s's (%s)", node.Self, cfg.ClientID, cluster.ServiceName(cfg.ClientID))
	}
	return &Client{node: node, tokens: tokens, timeout: cfg.Timeout, purpose: cfg.Purpose}, nil
}

// Close leaves the cluster.
func (c *Client) Close() { c.node.Stop(false) }

// caller is the proof every call carries: the service's current token.
func (c *Client) caller() (*messages.Caller, error) {
	tok, err := c.tokens.Token()
	if err != nil {
		return nil, fmt.Errorf("client: token: %w", err)
	}
	return &messages.Caller{Token: tok.AccessToken, PurposeOfUse: c.purpose}, nil
}

// call runs one grain call bounded by the client's timeout, retried by
// cluster.Call while the grain's activation moves.
func call[T any](ctx context.Context, c *Client, kind, id string, f func(*messages.Caller) (T, error)) (T, error) {
	var zero T
	caller, err := c.caller()
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return cluster.Call(ctx, c.node.Cluster, kind, id, func() (T, error) { return f(caller) })
}

// Prescription reads a prescription (pharmacies: any, by id).
func (c *Client) Prescription(ctx context.Context, id string) (*messages.PrescriptionReply, error) {
	return call(ctx, c, "Prescription", id, func(caller *messages.Caller) (*messages.PrescriptionReply, error) {
		return messages.GetPrescriptionGrainClient(c.node.Cluster, id).Get(&messages.GetPrescriptionRequest{Caller: caller},
			cluster.CallOptions(c.timeout)...)
	})
}

// Dispense records a dispense of quantity; a retry with the same
// idempotencyKey counts once.
func (c *Client) Dispense(ctx context.Context, id, quantity, idempotencyKey string) (*messages.PrescriptionReply, error) {
	return call(ctx, c, "Prescription", id, func(caller *messages.Caller) (*messages.PrescriptionReply, error) {
		return messages.GetPrescriptionGrainClient(c.node.Cluster, id).Dispense(&messages.DispenseRequest{Caller: caller,
			Quantity: quantity, IdempotencyKey: idempotencyKey}, cluster.CallOptions(c.timeout)...)
	})
}

// Appointment reads an appointment from its doctor's calendar.
func (c *Client) Appointment(ctx context.Context, doctorID, id string) (*messages.AppointmentReply, error) {
	return call(ctx, c, "Calendar", doctorID, func(caller *messages.Caller) (*messages.AppointmentReply, error) {
		return messages.GetCalendarGrainClient(c.node.Cluster, doctorID).GetAppointment(&messages.GetAppointmentRequest{Caller: caller,
			AppointmentId: id}, cluster.CallOptions(c.timeout)...)
	})
}

// RegisterPatient registers a patient under a new id (services with the
// receptionist role); a retry with the same idempotencyKey and id returns
// the first reply. The id is returned.
func (c *Client) RegisterPatient(ctx context.Context, rec *messages.PatientRecord, idempotencyKey string) (*messages.PatientReply, error) {
	id := rec.GetId()
	if id == "" {
		id = uuid.NewString()
	}
	return call(ctx, c, "Patient", id, func(caller *messages.Caller) (*messages.PatientReply, error) {
		return messages.GetPatientGrainClient(c.node.Cluster, id).Register(&messages.RegisterPatientRequest{Caller: caller,
			Patient: rec, IdempotencyKey: idempotencyKey}, cluster.CallOptions(c.timeout)...)
	})
}

// Patient reads a patient's record, as much of it as the service's role
// may see (demographics for receptionist services).
func (c *Client) Patient(ctx context.Context, id string) (*messages.PatientReply, error) {
	return call(ctx, c, "Patient", id, func(caller *messages.Caller) (*messages.PatientReply, error) {
		return messages.GetPatientGrainClient(c.node.Cluster, id).Get(&messages.GetPatientRequest{Caller: caller},
			cluster.CallOptions(c.timeout)...)
	})
}

// Visits reads a patient's visits (no service role may: clinical notes are
// for the patient and their doctors).
func (c *Client) Visits(ctx context.Context, patientID string) (*messages.VisitsReply, error) {
	return call(ctx, c, "Patient", patientID, func(caller *messages.Caller) (*messages.VisitsReply, error) {
		return messages.GetPatientGrainClient(c.node.Cluster, patientID).Visits(&messages.VisitsRequest{Caller: caller},
			cluster.CallOptions(c.timeout)...)
	})
}
