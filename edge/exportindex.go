package edge

import (
	"fmt"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/edge/locale"
)

// ExportIndex writes an export's README.txt in lang (ro, ru or en): what
// the archive is, what each file holds, and how to check the access log
// (patient.Exporter.Index).
func ExportIndex(lang, patientID string, at time.Time, files []patient.ExportFile) []byte {
	tx := locale.For(lang, "", locale.Supported[0])
	var b strings.Builder
	fmt.Fprintln(&b, tx.T("Everything caregrid holds about you"))
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, tx.T("This archive is a copy of your record, made at your request (GDPR articles 15 and 20)."), patientID, at.UTC().Format(time.RFC3339))
	fmt.Fprintln(&b, tx.T("Each file is JSON, in the field names of the caregrid API; documents are in their original format."))
	fmt.Fprintln(&b)
	for _, f := range files {
		fmt.Fprintf(&b, "%s: %s\n", f.Name, describe(tx, f))
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, tx.T("access-log.json is every access to your record, as the audit trail holds it, with the hashes that chain it and the signed checkpoints that seal the chain. Check it with: caregrid audit verify --export <this file>"))
	return []byte(b.String())
}

func describe(tx locale.Texts, f patient.ExportFile) string {
	switch f.Kind {
	case "patient":
		return tx.T("your registration: name, IDNP, contact, blood type, allergies")
	case "clinical-history":
		return tx.N("every change of your blood type and allergies ({{.Count}})", f.Count)
	case "visits":
		return tx.N("your visits with their diagnoses ({{.Count}})", f.Count)
	case "vaccinations":
		return tx.N("your vaccinations ({{.Count}})", f.Count)
	case "prescriptions":
		return tx.N("your prescriptions and their dispenses ({{.Count}})", f.Count)
	case "appointments":
		return tx.N("your appointments, kept and cancelled ({{.Count}})", f.Count)
	case "documents":
		return tx.N("your documents' details ({{.Count}})", f.Count)
	case "document":
		return tx.T("a document's content")
	case "consents":
		return tx.T("who may read your record: care team, your restrictions, emergency accesses, erasure requests")
	case "access-log":
		return tx.N("who accessed your record ({{.Count}})", f.Count)
	}
	return f.Kind
}
