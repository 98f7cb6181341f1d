package edge

import (
	"context"

	"github.com/caregrid/caregrid/persistence"
)

// Names looks up the names a person reads where the API would otherwise
// show only ids (persistence.DB). Each lookup takes a whole page's ids.
type Names interface {
	Readers(ctx context.Context, subjects []string) (map[string]persistence.Reader, error)
	ClientNames(ctx context.Context, clients []string) (map[string]string, error)
	PatientNames(ctx context.Context, patients []string) (map[string]string, error)
	DoctorNames(ctx context.Context, doctors []string) (map[string]string, error)
	ClinicNames(ctx context.Context, clinics []string) (map[string]string, error)
}

// names runs one lookup of s.cfg.Names. Names are for reading, never for
// deciding: when they cannot be had the answer goes out with ids alone
// (logged), rather than failing a page that was allowed and audited.
func names[V any](s *Server, ctx context.Context, what string, lookup func(Names) (map[string]V, error)) map[string]V {
	if s.cfg.Names == nil {
		return nil
	}
	m, err := lookup(s.cfg.Names)
	if err != nil {
		s.cfg.Logger.Warn("names unavailable: answering with ids", "names", what, "error", err)
		return nil
	}
	return m
}
