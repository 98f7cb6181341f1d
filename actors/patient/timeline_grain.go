package patient

import (
	"encoding/base64"
	"encoding/json"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// timelineCursor is the last entry a page showed.
type timelineCursor struct {
	At   int64  `json:"t"`
	Kind string `json:"k"`
	ID   string `json:"i"`
}

func encodeTimelineCursor(at time.Time, kind, id string) string {
	b, _ := json.Marshal(timelineCursor{At: at.UnixMicro(), Kind: kind, ID: id})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeTimelineCursor(s string) (time.Time, string, string, bool) {
	if s == "" {
		return time.Unix(0, 0).UTC(), "", "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c timelineCursor
	if err != nil || json.Unmarshal(b, &c) != nil || c.Kind == "" || c.ID == "" {
		return time.Time{}, "", "", false
	}
	return time.UnixMicro(c.At).UTC(), c.Kind, c.ID, true
}

// Timeline merges the patient's visits, diagnoses, vaccinations and
// appointments, newest first: the patient and doctors who treat them.
func (g *Grain) Timeline(req *messages.TimelineRequest, ctx actorcluster.GrainContext) (*messages.TimelineReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_TIMELINE
	limit, _, err := g.clinicalRead(ctx, c, action, req.Limit, "")
	if err != nil {
		return nil, err
	}
	before, kind, id, ok := decodeTimelineCursor(req.Cursor)
	if !ok {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("bad cursor").
			WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"}))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.Timeline(sctx, k, g.id, before, kind, id, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "timeline", err)
	}
	reply := &messages.TimelineReply{}
	for i, r := range rows {
		if i == limit {
			last := rows[limit-1]
			reply.NextCursor = encodeTimelineCursor(last.At, last.Kind, last.ID)
			break
		}
		reply.Entries = append(reply.Entries, &messages.TimelineEntry{Kind: r.Kind, Id: r.ID, At: timestamppb.New(r.At),
			Summary: r.Text, DoctorId: r.DoctorID, VisitId: r.VisitID})
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}
