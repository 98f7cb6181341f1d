package prescription

import (
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/proto"
)

// Clinical text is sealed with the patient's data key, bound to its row
// and field, so a value copied into another row or column does not open.
func aad(id, field string) string { return "prescription/" + id + "/" + field }

// sealOptional seals s, or stores nothing when it is empty.
func sealOptional(k *seal.Key, s, id, field string) []byte {
	if s == "" {
		return nil
	}
	return k.Seal([]byte(s), aad(id, field))
}

func openOptional(k *seal.Key, b []byte, id, field string) (string, error) {
	if b == nil {
		return "", nil
	}
	s, err := k.Open(b, aad(id, field))
	return string(s), err
}

// Seal is the row to store for p: its clinical text sealed with k.
func Seal(k *seal.Key, p *messages.PrescriptionRecord, fingerprint []byte) persistence.StoredPrescription {
	bare := proto.Clone(p).(*messages.PrescriptionRecord)
	bare.Notes, bare.OverrideReason, bare.EndReason = "", "", ""
	return persistence.StoredPrescription{Record: bare, Fingerprint: fingerprint,
		NotesSealed:     k.Seal([]byte(p.Notes), aad(p.Id, "notes")),
		OverrideSealed:  sealOptional(k, p.OverrideReason, p.Id, "override"),
		EndReasonSealed: sealOptional(k, p.EndReason, p.Id, "end-reason")}
}

// Open is the prescription a row holds, its clinical text opened with k.
func Open(k *seal.Key, sp persistence.StoredPrescription) (*messages.PrescriptionRecord, error) {
	p := proto.Clone(sp.Record).(*messages.PrescriptionRecord)
	notes, err := k.Open(sp.NotesSealed, aad(p.Id, "notes"))
	if err != nil {
		return nil, err
	}
	p.Notes = string(notes)
	if p.OverrideReason, err = openOptional(k, sp.OverrideSealed, p.Id, "override"); err != nil {
		return nil, err
	}
	if p.EndReason, err = openOptional(k, sp.EndReasonSealed, p.Id, "end-reason"); err != nil {
		return nil, err
	}
	return p, nil
}
