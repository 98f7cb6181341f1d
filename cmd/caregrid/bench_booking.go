package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	crdbpgx "github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valyala/fasthttp"
)

// bookingResult is the one JSON line a booking scenario prints.
type bookingResult struct {
	Scenario    string  `json:"scenario"`
	BookingsPS  float64 `json:"bookings_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Errors      int64   `json:"errors"`
	Retries     int64   `json:"retries"`
	Bookings    int64   `json:"bookings"`
	Concurrency int     `json:"concurrency"`
	Doctors     int     `json:"doctors"`
	DurationS   float64 `json:"duration_s"`
}

// benchSlotMinutes is the length of every benchmark booking.
const benchSlotMinutes = 15

type bookingFlags struct {
	conc, doctors, patients int
	dur, warmup             time.Duration
	target                  benchTarget
	dbURL                   string
}

func parseBookingFlags(name string, args []string, doctors int) (bookingFlags, error) {
	fs := flag.NewFlagSet("bench "+name, flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the edge to load")
	urls := fs.String("urls", "", "several edges to spread the load over, comma-separated (instead of --url)")
	f := bookingFlags{}
	fs.IntVar(&f.conc, "concurrency", 32, "concurrent clients")
	fs.IntVar(&f.doctors, "doctors", doctors, "doctors to spread bookings over")
	fs.IntVar(&f.patients, "patients", 0, "patients the bookings are for (default: 100, or --doctors if more: fewer patients than doctors would book one patient twice at the same time)")
	fs.DurationVar(&f.dur, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "load before measuring")
	fs.StringVar(&f.dbURL, "database-url", os.Getenv("DATABASE_URL"), "booking-sql-baseline: the database to book in directly")
	creds := benchCredentialFlags(fs)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.patients == 0 {
		f.patients = max(100, f.doctors)
	}
	if f.conc < 1 || f.dur <= 0 || f.doctors < 1 || f.patients < 1 {
		return f, errors.New("bench: --concurrency, --duration, --doctors and --patients must be positive")
	}
	if name == "booking-sql-baseline" {
		if f.dbURL == "" {
			return f, errors.New("bench booking-sql-baseline: set --database-url or DATABASE_URL")
		}
		return f, nil
	}
	var err error
	f.target, err = newBenchTarget(context.Background(), *base, *urls, creds)
	return f, err
}

// slotPlan hands out booking n's doctor and start: bookings go round the
// doctors, each doctor's slots follow each other, no two bookings share a
// slot, and each patient's bookings are at distinct times.
type slotPlan struct {
	first   time.Time
	doctors int
}

func (p slotPlan) at(n int64) (doctor int, start time.Time) {
	return int(n % int64(p.doctors)), p.first.Add(time.Duration(n/int64(p.doctors)) * benchSlotMinutes * time.Minute)
}

// planStart is midnight UTC two days ahead: on the grid, never in the past
// during a run, and different for runs on different days.
func planStart() time.Time { return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 2) }

// loadLoop runs conc clients for warmup, then measures for dur; one returns
// a booking's latency and whether it succeeded.
func loadLoop(ctx context.Context, conc int, warmup, dur time.Duration, one func() (time.Duration, bool)) ([]time.Duration, int64, time.Duration) {
	run := func(d time.Duration, record bool) ([]time.Duration, int64) {
		var (
			mu   sync.Mutex
			all  []time.Duration
			errs int64
			wg   sync.WaitGroup
			end  = time.Now().Add(d)
		)
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				var e int64
				for time.Now().Before(end) && ctx.Err() == nil {
					l, ok := one()
					if !ok {
						e++
					}
					if record {
						lat = append(lat, l)
					}
				}
				mu.Lock()
				all, errs = append(all, lat...), errs+e
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all, errs
	}
	run(warmup, false)
	start := time.Now()
	lat, errs := run(dur, true)
	return lat, errs, time.Since(start)
}

func toBookingResult(scenario string, lat []time.Duration, errs, retries int64, f bookingFlags, elapsed time.Duration) bookingResult {
	r := summarize(scenario, lat, errs, f.conc, elapsed)
	return bookingResult{Scenario: scenario, BookingsPS: float64(len(lat)-int(errs)) / elapsed.Seconds(), P50ms: r.P50ms, P99ms: r.P99ms,
		Errors: errs, Retries: retries, Bookings: int64(len(lat)) - errs, Concurrency: f.conc, Doctors: f.doctors, DurationS: elapsed.Seconds()}
}

// setupDoctors creates a clinic and doctors who work around the clock, as an admin.
func setupDoctors(t benchTarget, n int) ([]string, error) {
	tok := t.token
	c := t.client(4)
	post := func(method, path string, body any) (map[string]any, error) {
		b, _ := json.Marshal(body)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(t.base + path)
		req.Header.SetMethod(method)
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.SetBody(b)
		if err := c.Do(req, resp); err != nil {
			return nil, err
		}
		if resp.StatusCode() >= 300 {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode(), resp.Body())
		}
		var out map[string]any
		return out, json.Unmarshal(resp.Body(), &out)
	}
	clinic, err := post("POST", "/v1/clinics", map[string]any{"name": "Bench clinic", "address": "Chișinău", "time_zone": "Europe/Chisinau"})
	if err != nil {
		return nil, fmt.Errorf("bench: create clinic: %w", err)
	}
	var weekly []map[string]any
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		weekly = append(weekly, map[string]any{"weekday": d, "ranges": []map[string]string{{"start": "00:00", "end": "24:00"}}})
	}
	ids := make([]string, n)
	for i := range ids {
		d, err := post("POST", "/v1/doctors", map[string]any{"given_name": "Bench", "family_name": fmt.Sprintf("Doctor %d", i),
			"specialty": "family medicine", "clinic_id": clinic["id"], "time_zone": "Europe/Chisinau", "slot_minutes": benchSlotMinutes})
		if err != nil {
			return nil, fmt.Errorf("bench: create doctor: %w", err)
		}
		ids[i] = d["id"].(string)
		if _, err := post("PUT", "/v1/doctors/"+ids[i]+"/availability", map[string]any{"slot_minutes": benchSlotMinutes, "weekly": weekly}); err != nil {
			return nil, fmt.Errorf("bench: set hours: %w", err)
		}
	}
	return ids, nil
}

// benchBookingEdge books distinct slots through the edge, as a receptionist.
func benchBookingEdge(ctx context.Context, scenario string, f bookingFlags) (bookingResult, error) {
	doctors, err := setupDoctors(f.target, f.doctors)
	if err != nil {
		return bookingResult{}, err
	}
	patients, err := registerPatients(ctx, f.target, f.patients)
	if err != nil {
		return bookingResult{}, err
	}
	c, auth := f.target.client(f.conc), "Bearer "+f.target.token
	plan := slotPlan{first: planStart(), doctors: len(doctors)}
	run := uuid.NewString() // idempotency keys are unique per run
	var seq atomic.Int64
	var firstErr atomic.Value
	one := func() (time.Duration, bool) {
		n := seq.Add(1) - 1
		d, start := plan.at(n)
		body, _ := json.Marshal(map[string]any{"doctor_id": doctors[d], "patient_id": patients[n%int64(len(patients))],
			"start": start.Format(time.RFC3339), "duration_minutes": benchSlotMinutes})
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(f.target.base + "/v1/appointments")
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", auth)
		req.Header.Set("Idempotency-Key", run+"-"+strconv.FormatInt(n, 10))
		req.SetBody(body)
		t0 := time.Now()
		err := c.Do(req, resp)
		ok := err == nil && resp.StatusCode() == 201
		if !ok && firstErr.Load() == nil {
			firstErr.Store(fmt.Sprintf("%v %d %s", err, resp.StatusCode(), resp.Body()))
		}
		return time.Since(t0), ok
	}
	lat, errs, elapsed := loadLoop(ctx, f.conc, f.warmup, f.dur, one)
	if ctx.Err() != nil {
		return bookingResult{}, ctx.Err()
	}
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "bench %s: first failure: %s\n", scenario, e)
	}
	return toBookingResult(scenario, lat, errs, 0, f, elapsed), nil
}

// benchSQLBaseline is the hot-doctor workload done the usual way: one
// SERIALIZABLE transaction per booking that checks the doctor's and the
// patient's overlaps and inserts, retried on serialization failures.
func benchSQLBaseline(ctx context.Context, f bookingFlags) (bookingResult, error) {
	pool, err := pgxpool.New(ctx, f.dbURL)
	if err != nil {
		return bookingResult{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_baseline_appointments (
			id UUID PRIMARY KEY, doctor_id UUID NOT NULL, patient_id UUID NOT NULL,
			start_at TIMESTAMPTZ NOT NULL, end_at TIMESTAMPTZ NOT NULL);
		CREATE INDEX IF NOT EXISTS bench_baseline_doctor ON bench_baseline_appointments (doctor_id, start_at);
		CREATE INDEX IF NOT EXISTS bench_baseline_patient ON bench_baseline_appointments (patient_id, start_at)`); err != nil {
		return bookingResult{}, fmt.Errorf("bench: baseline table: %w", err)
	}
	doctors := make([]uuid.UUID, f.doctors)
	for i := range doctors {
		doctors[i] = uuid.New()
	}
	patients := make([]uuid.UUID, f.patients)
	for i := range patients {
		patients[i] = uuid.New()
	}
	plan := slotPlan{first: planStart(), doctors: len(doctors)}
	var seq, retries atomic.Int64
	var firstErr atomic.Value
	one := func() (time.Duration, bool) {
		n := seq.Add(1) - 1
		d, start := plan.at(n)
		end := start.Add(benchSlotMinutes * time.Minute)
		doctor, patient := doctors[d], patients[n%int64(len(patients))]
		t0 := time.Now()
		attempt := 0
		err := crdbpgx.ExecuteTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			if attempt++; attempt > 1 {
				retries.Add(1)
			}
			var busy bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bench_baseline_appointments
				WHERE (doctor_id = $1 OR patient_id = $2) AND start_at < $4 AND end_at > $3)`, doctor, patient, start, end).Scan(&busy); err != nil {
				return err
			}
			if busy {
				return errSlotTaken
			}
			_, err := tx.Exec(ctx, `INSERT INTO bench_baseline_appointments (id, doctor_id, patient_id, start_at, end_at)
				VALUES ($1, $2, $3, $4, $5)`, uuid.New(), doctor, patient, start, end)
			return err
		})
		if err != nil && firstErr.Load() == nil {
			firstErr.Store(err.Error())
		}
		return time.Since(t0), err == nil
	}
	lat, errs, elapsed := loadLoop(ctx, f.conc, f.warmup, f.dur, one)
	if ctx.Err() != nil {
		return bookingResult{}, ctx.Err()
	}
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "bench booking-sql-baseline: first failure: %s\n", e)
	}
	return toBookingResult("booking-sql-baseline", lat, errs, retries.Load(), f, elapsed), nil
}

var errSlotTaken = errors.New("slot taken")

var benchUsage = strings.TrimSpace(`
usage: caregrid bench SCENARIO [flags]
  read-patient          audited patient reads (--patients N)
  booking-hot           distinct slots of one doctor through the edge
  booking-spread        distinct slots over --doctors N (default 50) through the edge
  booking-sql-baseline  the hot-doctor workload as SERIALIZABLE check-then-insert on --database-url
  seed                  fill --database-url with --patients N patients with Romanian and Russian names
  search-patients       patient searches as a receptionist types them (16 clients by default), audited
common flags: --url URL --concurrency N --duration D --warmup D --client-id ID --client-secret S
  (a service client with the admin role: caregrid admin client create --kind service --role admin --name bench;
   or CAREGRID_BENCH_CLIENT_ID and CAREGRID_BENCH_CLIENT_SECRET)`)

func benchBooking(ctx context.Context, scenario string, args []string) error {
	doctors := 1
	if scenario == "booking-spread" {
		doctors = 50
	}
	f, err := parseBookingFlags(scenario, args, doctors)
	if err != nil {
		return err
	}
	var r bookingResult
	if scenario == "booking-sql-baseline" {
		r, err = benchSQLBaseline(ctx, f)
	} else {
		r, err = benchBookingEdge(ctx, scenario, f)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
