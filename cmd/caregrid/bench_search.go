package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/search"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Names as Moldova's register has them: Romanian in Latin letters with
// diacritics, Russian in Cyrillic (about a fifth of the people).
var (
	romanianGiven  = []string{"Ion", "Maria", "Ștefan", "Elena", "Gheorghe", "Ana", "Vasile", "Tatiana", "Nicolae", "Natalia", "Mihai", "Ecaterina", "Andrei", "Olga", "Vladimir", "Svetlana", "Dumitru", "Galina", "Alexandru", "Aurelia", "Sergiu", "Valentina", "Constantin", "Doina", "Petru", "Lilia", "Victor", "Cristina", "Iurie", "Mariana"}
	romanianFamily = []string{"Popescu", "Rusu", "Ciobanu", "Țurcanu", "Ceban", "Rotaru", "Lungu", "Munteanu", "Cojocaru", "Moraru", "Sârbu", "Bălan", "Guțu", "Cazacu", "Melnic", "Botnaru", "Grosu", "Țâcu", "Creţu", "Bivol", "Pascari", "Ursu", "Chiriac", "Roșca", "Istrati", "Buzu", "Cebotari", "Ciorbă", "Vrabie", "Prodan"}
	russianGiven   = []string{"Александр", "Мария", "Сергей", "Елена", "Андрей", "Ольга", "Дмитрий", "Татьяна", "Иван", "Наталья", "Николай", "Светлана", "Владимир", "Галина", "Юрий"}
	russianFamily  = []string{"Иванов", "Попеску", "Смирнов", "Кузнецов", "Чебан", "Петров", "Русу", "Волков", "Морозов", "Лунгу", "Соколов", "Цуркану", "Козлов", "Новиков", "Чобану"}
)

// benchSeed fills a database with n patients with realistic names (and
// the search read model with them), in batches through COPY, drawing a
// progress bar: what a search benchmark needs, without the hours that
// registering a million patients through the API would take.
func benchSeed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench seed", flag.ContinueOnError)
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "the database to fill (env DATABASE_URL)")
	n := fs.Int("patients", 100_000, "patients to add")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dbURL == "" || *n < 1 {
		return errors.New("bench seed: --database-url and a positive --patients are required")
	}
	db, err := persistence.Open(ctx, *dbURL, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	start := time.Now()
	bar := newProgress(os.Stderr, "seed", *n)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	for done := 0; done < *n; {
		batch := min(10_000, *n-done)
		recs := make([]*messages.PatientRecord, batch)
		for i := range recs {
			recs[i] = seedPatient(rng)
		}
		if err := copyPatients(ctx, db, recs); err != nil {
			return err
		}
		done += batch
		bar.set(done)
	}
	bar.finish()
	seconds := time.Since(start).Seconds()
	var words, vocabulary, table string
	if err := db.Pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_total_relation_size('patient_words')),
		pg_size_pretty(pg_total_relation_size('search_words')), pg_size_pretty(pg_total_relation_size('patient_search'))`).Scan(&words, &vocabulary, &table); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"seeded": *n, "seconds": seconds,
		"word_keys_size": words, "vocabulary_size": vocabulary, "read_model_size": table})
}

func seedPatient(rng *rand.Rand) *messages.PatientRecord {
	given, family := romanianGiven, romanianFamily
	if rng.IntN(5) == 0 {
		given, family = russianGiven, russianFamily
	}
	now := time.Now().UTC()
	birth := time.Date(1930+rng.IntN(95), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
	return &messages.PatientRecord{
		Id: uuid.NewString(), Idnp: randomIDNP(rng), GivenName: given[rng.IntN(len(given))], FamilyName: family[rng.IntN(len(family))],
		BirthDate: birth.Format(time.DateOnly), Sex: messages.Sex(1 + rng.IntN(2)),
		Phone: fmt.Sprintf("+3736%07d", rng.IntN(10_000_000)), Version: 1,
		CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
	}
}

// copyPatients writes records to patients and to the search read model
// in one transaction.
func copyPatients(ctx context.Context, db *persistence.DB, recs []*messages.PatientRecord) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		rows := make([][]any, len(recs))
		views := make([][]any, len(recs))
		var (
			words    []string
			postings [][]any
		)
		for i, r := range recs {
			rows[i] = []any{r.Id, r.Idnp, r.GivenName, r.FamilyName, r.BirthDate, r.Sex.Name(), r.Phone, "",
				messages.BloodType_BLOOD_TYPE_UNSPECIFIED.Name(), "[]", int64(1), []byte{}, r.CreatedAt.AsTime(), r.UpdatedAt.AsTime()}
			v := search.View(r)
			views[i] = []any{v.PatientID, v.IDNP, v.GivenName, v.FamilyName, v.BirthDate, v.Sex, v.Phone, v.NameKey, v.Words, v.Version, r.UpdatedAt.AsTime()}
			words = append(words, v.Words...)
			for i, a := range v.Words {
				postings = append(postings, []any{a, v.PatientID})
				for _, b := range v.Words[i+1 : min(len(v.Words), persistence.MaxPairedWords)] {
					if i < persistence.MaxPairedWords {
						postings = append(postings, []any{persistence.PairKey(a, b), v.PatientID})
					}
				}
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"id", "idnp", "given_name", "family_name", "birth_date", "sex",
			"phone", "email", "blood_type", "allergies", "version", "registration_fingerprint", "created_at", "updated_at"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("seed patients: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"patient_search"}, []string{"patient_id", "idnp", "given_name", "family_name", "birth_date",
			"sex", "phone", "name_key", "name_words", "version", "updated_at"}, pgx.CopyFromRows(views)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"patient_words"}, []string{"word", "patient_id"}, pgx.CopyFromRows(postings)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO search_words SELECT DISTINCT unnest($1::TEXT[]) ON CONFLICT DO NOTHING`, words)
		return err
	})
}

// benchSearchPatients measures GET /v1/patients under load: queries as a
// receptionist types them (a family name, in either script, sometimes
// with a given name or a typo; an IDNP prefix), every listed patient
// audited.
func benchSearchPatients(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench search-patients", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the edge to load")
	conc := fs.Int("concurrency", 16, "concurrent clients")
	dur := fs.Duration("duration", 10*time.Second, "how long to measure")
	warmup := fs.Duration("warmup", 2*time.Second, "load before measuring")
	creds := benchCredentialFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := newBenchTarget(ctx, *base, "", creds)
	if err != nil {
		return err
	}
	c := target.client(*conc)
	auth := "Bearer " + target.token
	queries := []string{}
	for i, f := range romanianFamily {
		queries = append(queries, f, romanianGiven[i%len(romanianGiven)]+" "+f)
	}
	queries = append(queries, russianFamily...)
	queries = append(queries, "Popesku", "Ciobnu", "Turcanu", "Stefan Rusu", "2005", "200504", "3736")
	one := func() (time.Duration, bool) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		q := queries[rand.IntN(len(queries))]
		req.SetRequestURI(target.base + "/v1/patients?q=" + url.QueryEscape(q))
		req.Header.Set("Authorization", auth)
		start := time.Now()
		err := c.Do(req, resp)
		return time.Since(start), err == nil && (resp.StatusCode() == 200 || resp.StatusCode() == 400)
	}
	lat, errs, elapsed := loadLoop(ctx, *conc, *warmup, *dur, one)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return json.NewEncoder(os.Stdout).Encode(summarize("search-patients", lat, errs, *conc, elapsed))
}
