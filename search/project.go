package search

import (
	"errors"
	"slices"
	"strings"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
)

var (
	registeredType = string(proto.MessageName(&messages.PatientRegistered{}))
	updatedType    = string(proto.MessageName(&messages.PatientUpdated{}))
)

// Project is the search read model's persistence.Projector: a patient's
// demographics and keys from PatientRegistered and PatientUpdated. Other
// events change nothing here.
func Project(ev persistence.OutboxEvent, p *persistence.Projection) error {
	var rec *messages.PatientRecord
	switch ev.EventType {
	case registeredType:
		var e messages.PatientRegistered
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		rec = e.GetPatient()
	case updatedType:
		var e messages.PatientUpdated
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		rec = e.GetPatient()
	default:
		return nil
	}
	if rec.GetId() == "" {
		return errors.New("patient event without a patient")
	}
	p.Patients = append(p.Patients, View(rec))
	return nil
}

// View is a patient as the read model keeps them: demographics and the
// keys a search matches, never clinical data.
func View(rec *messages.PatientRecord) persistence.PatientView {
	key := Fold(rec.GetGivenName() + " " + rec.GetFamilyName())
	var words []string
	for _, w := range strings.Fields(key) {
		if !slices.Contains(words, w) {
			words = append(words, w)
		}
	}
	return persistence.PatientView{
		PatientID: rec.GetId(), IDNP: rec.GetIdnp(), GivenName: rec.GetGivenName(), FamilyName: rec.GetFamilyName(),
		BirthDate: rec.GetBirthDate(), Sex: rec.GetSex().Name(), Phone: Phone(rec.GetPhone()),
		NameKey: key, Words: words, Version: rec.GetVersion(),
	}
}

// Projectors is one Projector made of several, in order.
func Projectors(ps ...persistence.Projector) persistence.Projector {
	return func(ev persistence.OutboxEvent, p *persistence.Projection) error {
		for _, project := range ps {
			if err := project(ev, p); err != nil {
				return err
			}
		}
		return nil
	}
}
