package edge

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/search"
	"github.com/gofiber/fiber/v2"
)

// DirectoryLists are the lists read from the database rather than asked
// of grains (persistence.DB): the doctor and clinic directories, a day's
// appointments, and a patient's id by IDNP.
type DirectoryLists interface {
	ListDoctors(ctx context.Context, specialty, clinic string) ([]*messages.DoctorRecord, error)
	ListClinics(ctx context.Context) ([]*messages.ClinicRecord, error)
	DayAppointments(ctx context.Context, q persistence.DayQuery) ([]*messages.AppointmentRecord, error)
	PatientIDByIDNP(ctx context.Context, idnp string) (string, error)
}

// Directory page sizes.
const (
	defaultDirectoryLimit = 100
	maxDirectoryLimit     = 500
)

// directoryQuery reads ?q= (a name, folded like the patient search's, so
// "Stefan" finds Ștefan and "Попеску" Popescu) and ?limit=.
func directoryQuery(c *fiber.Ctx) (q string, limit int, err error) {
	raw := c.Query("q")
	if utf8.RuneCountInString(raw) > search.MaxQueryRunes {
		return "", 0, malformed("q is at most 100 characters", FieldError{"q", "must be at most 100 characters"})
	}
	limit = defaultDirectoryLimit
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxDirectoryLimit {
			return "", 0, malformed("limit must be a whole number from 1 to 500", FieldError{"limit", "must be 1 to 500"})
		}
		limit = n
	}
	return search.Fold(raw), limit, nil
}

// nameMatches reports whether every word of a folded query starts a word
// of the folded name.
func nameMatches(query, name string) bool {
	words := strings.Fields(name)
	for _, q := range strings.Fields(query) {
		found := false
		for _, w := range words {
			found = found || strings.HasPrefix(w, q)
		}
		if !found {
			return false
		}
	}
	return true
}

// listDoctors answers GET /v1/doctors?specialty=&clinic=&q=&limit=: the
// doctors, by family name (anyone signed in: the directory is what a
// patient chooses a doctor from).
func (s *Server) listDoctors(c *fiber.Ctx) error {
	q, limit, err := directoryQuery(c)
	if err != nil {
		return err
	}
	clinic := c.Query("clinic")
	if clinic != "" && !isUUID(clinic) {
		return malformed("clinic must be a clinic id (UUID)", FieldError{"clinic", "must be a clinic id (UUID)"})
	}
	if s.cfg.Lists == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Directory unavailable", "this node has no directory")
	}
	doctors, err := s.cfg.Lists.ListDoctors(c.UserContext(), persistence.SpecialtyKey(c.Query("specialty")), normalUUID(clinic))
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Doctors []doctorJSON `json:"doctors"`
	}{Doctors: []doctorJSON{}}
	for _, d := range doctors {
		if len(out.Doctors) < limit && nameMatches(q, search.Fold(d.GivenName+" "+d.FamilyName)) {
			out.Doctors = append(out.Doctors, toDoctorJSON(d))
		}
	}
	return c.JSON(out)
}

// listClinics answers GET /v1/clinics?q=&limit= (anyone signed in).
func (s *Server) listClinics(c *fiber.Ctx) error {
	q, limit, err := directoryQuery(c)
	if err != nil {
		return err
	}
	if s.cfg.Lists == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Directory unavailable", "this node has no directory")
	}
	clinics, err := s.cfg.Lists.ListClinics(c.UserContext())
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Clinics []clinicJSON `json:"clinics"`
	}{Clinics: []clinicJSON{}}
	for _, cl := range clinics {
		if len(out.Clinics) < limit && nameMatches(q, search.Fold(cl.Name)) {
			out.Clinics = append(out.Clinics, toClinicJSON(cl))
		}
	}
	return c.JSON(out)
}

func directoryUnavailable(s *Server, err error) error {
	s.cfg.Logger.Error("directory", "error", err)
	p := problem(fiber.StatusServiceUnavailable, "store-unavailable", "Database unavailable", "the directory could not be read; retry")
	p.retryAfter = "1"
	return p
}
