package persistence

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
)

// PatientView is a patient as the search read model keeps them:
// demographics only, with the keys the search matches (search.Fold,
// search.Phone), computed by the projector.
type PatientView struct {
	PatientID, IDNP, GivenName, FamilyName, BirthDate, Sex string
	Phone, NameKey                                         string
	// Words are NameKey's distinct words, which the search matches.
	Words   []string
	Version int64
}

func queuePatientViews(q *pgx.Batch, vs []PatientView) {
	if len(vs) == 0 {
		return
	}
	vs = latest(vs, func(v PatientView) string { return v.PatientID }, func(v PatientView) int64 { return v.Version })
	n := len(vs)
	cols := make([][]string, 8)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	versions := make([]int64, n)
	var vocabulary []string
	for i, v := range vs {
		cols[0][i], cols[1][i], cols[2][i], cols[3][i] = v.PatientID, v.IDNP, v.GivenName, v.FamilyName
		cols[4][i], cols[5][i], cols[6][i], cols[7][i] = v.BirthDate, v.Sex, v.Phone, v.NameKey
		versions[i] = v.Version
		vocabulary = append(vocabulary, v.Words...)
	}
	// An older event delivered after a newer one changes nothing (version);
	// the same version again (a reindex after Fold changed) rewrites the
	// keys. The words are split again from name_key here so that the array
	// can never disagree with the key.
	// patient_words follows the rows actually written (RETURNING): a key
	// the name no longer has goes, a new one comes.
	q.Queue(`WITH up AS (
			INSERT INTO patient_search (patient_id, idnp, given_name, family_name, birth_date, sex, phone, name_key, name_words, version, updated_at)
			SELECT u.id, u.idnp, u.given, u.family, u.birth, u.sex, u.phone, u.name,
				ARRAY(SELECT DISTINCT w FROM unnest(string_to_array(u.name, ' ')) AS w WHERE w <> ''), u.version, $10
			FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[])
				AS u (id, idnp, given, family, birth, sex, phone, name, version)
			ON CONFLICT (patient_id) DO UPDATE SET idnp = EXCLUDED.idnp, given_name = EXCLUDED.given_name,
				family_name = EXCLUDED.family_name, birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, phone = EXCLUDED.phone,
				name_key = EXCLUDED.name_key, name_words = EXCLUDED.name_words, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
			WHERE patient_search.version <= EXCLUDED.version
			RETURNING patient_id, name_words
		), keys AS (
			SELECT up.patient_id, k.key FROM up, LATERAL (`+postingKeys("up.name_words")+`) AS k (key)
		), gone AS (
			DELETE FROM patient_words w USING up WHERE w.patient_id = up.patient_id
			AND NOT EXISTS (SELECT 1 FROM keys WHERE keys.patient_id = w.patient_id AND keys.key = w.word)
		)
		INSERT INTO patient_words (word, patient_id) SELECT key, patient_id FROM keys ON CONFLICT DO NOTHING`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], versions, time.Now().UTC())
	// Sorted, so that two writers insert shared words in the same order.
	vocabulary = distinct(vocabulary)
	slices.Sort(vocabulary)
	q.Queue(`INSERT INTO search_words (word) SELECT unnest($1::TEXT[]) ON CONFLICT DO NOTHING`, vocabulary)
}

// MaxPairedWords are the words of a name whose pairs are indexed: names
// are two to four words; a longer one is still found by its words, only
// not through a pair of its later ones.
const MaxPairedWords = 8

// postingKeys is the SQL for the patient_words keys of a name's words (an
// array expression): each word, and each pair of its first MaxPairedWords
// as "a b" with a before b in byte order (PairKey's order), so that two
// words are found with one walk instead of intersecting two long lists.
func postingKeys(words string) string {
	return `SELECT w FROM unnest(` + words + `) AS w
		UNION SELECT a || ' ' || b FROM unnest(` + words + `) WITH ORDINALITY AS x (a, i), unnest(` + words + `) WITH ORDINALITY AS y (b, j)
		WHERE i <= ` + fmt.Sprint(MaxPairedWords) + ` AND j <= ` + fmt.Sprint(MaxPairedWords) + ` AND a COLLATE "C" < b COLLATE "C"`
}

// PairKey is the patient_words key of two different words.
func PairKey(a, b string) string {
	if b < a { // Go compares bytes, as COLLATE "C" does
		a, b = b, a
	}
	return a + " " + b
}

// PatientQuery is one search of the read model. Name is a folded name
// (search.Fold) matched by word similarity; Digits, when set, matches an
// IDNP by prefix (6 digits or more) or a phone's national number. Both
// may be set (a query of digits only is tried as both).
type PatientQuery struct {
	Name           string
	IDNPPrefix     string
	Phone          string
	BirthDate, Sex string
	Offset, Limit  int
	// Blocked, when set, is a doctor searching: patients who have blocked
	// that doctor or their clinic are not found.
	Blocked string
}

// SearchPatients returns up to Limit patients matching q, best first.
// Digits match an IDNP by prefix or a phone exactly, in IDNP order. A
// name is matched word by word (searchNames).
func (db *DB) SearchPatients(ctx context.Context, q PatientQuery) (found []PatientView, err error) {
	if q.Name != "" {
		return db.searchNames(ctx, q)
	}
	// Digits only: an IDNP prefix as a range (the index is in byte order;
	// ':' follows '9'), and a phone's national number.
	upper := ""
	if q.IDNPPrefix != "" {
		upper = q.IDNPPrefix + ":"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+searchColumns+` FROM patient_search s
		WHERE ((s.idnp COLLATE "C" >= $1 AND s.idnp COLLATE "C" < $2) OR ($3 <> '' AND s.phone = $3))
		AND ($4 = '' OR s.birth_date = $4) AND ($5 = '' OR s.sex = $5)
		AND ($8 = '' OR `+notBlocked("s.patient_id", "nullif($8, '')::UUID")+`)
		ORDER BY s.idnp COLLATE "C" OFFSET $6 LIMIT $7`,
		q.IDNPPrefix, upper, q.Phone, q.BirthDate, q.Sex, q.Offset, q.Limit, q.Blocked)
	if err != nil {
		return nil, classify(err)
	}
	found, err = collectViews(rows)
	return found, classify(err)
}

const searchColumns = `patient_id::TEXT, idnp, given_name, family_name, birth_date, sex, phone, name_key, name_words, version`

func collectViews(rows pgx.Rows) ([]PatientView, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PatientView, error) {
		var v PatientView
		err := r.Scan(&v.PatientID, &v.IDNP, &v.GivenName, &v.FamilyName, &v.BirthDate, &v.Sex, &v.Phone, &v.NameKey, &v.Words, &v.Version)
		return v, err
	})
}

// PutPatientViews writes views to the read model (a reindex's batch).
func (db *DB) PutPatientViews(ctx context.Context, vs []PatientView) error {
	var q pgx.Batch
	queuePatientViews(&q, vs)
	return classify(db.Pool.SendBatch(ctx, &q).Close())
}

// PatientsAfter returns up to limit patients in id order after afterID
// ("" for the first): a reindex's walk over the source table.
func (db *DB) PatientsAfter(ctx context.Context, afterID string, limit int) ([]*messages.PatientRecord, error) {
	return db.patientsWhere(ctx, "TRUE", afterID, limit)
}

func (db *DB) patientsWhere(ctx context.Context, cond, afterID string, limit int) ([]*messages.PatientRecord, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+patientColumns+` FROM patients WHERE id > $1 AND `+cond+` ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.PatientRecord, error) {
		sp, err := scanPatient(r)
		if err != nil {
			return nil, err
		}
		return sp.Record, nil
	})
	return out, classify(err)
}

// PatientsMissingFromSearch is PatientsAfter for the patients the search
// read model does not hold (search.Backfill).
func (db *DB) PatientsMissingFromSearch(ctx context.Context, afterID string, limit int) ([]*messages.PatientRecord, error) {
	return db.patientsWhere(ctx, `NOT EXISTS (SELECT 1 FROM patient_search s WHERE s.patient_id = patients.id)`, afterID, limit)
}

// CountPatients is how many patients there are (a reindex's total).
func (db *DB) CountPatients(ctx context.Context) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM patients`).Scan(&n)
	return n, classify(err)
}
