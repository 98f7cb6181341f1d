package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// SMS sends over SMPP 3.4 (the protocol SMS gateways speak) through
// gosmpp, as a transceiver: one bound session per member, opened on first
// use and again after it drops. Every message asks for a delivery receipt;
// receipts arrive as deliver_sm on the same session and go to OnReceipt.
// SMPP has no key the gateway de-duplicates by, so a message sent again
// after a member died mid-send may arrive twice.
type SMS struct {
	Addr       string // the SMSC's host:port
	SystemID   string
	Password   string
	SystemType string
	// Source is the sender shown on the phone: an alphanumeric name
	// ("caregrid") or a number.
	Source string
	// OnReceipt is told of each delivery receipt: the gateway's message id
	// (as submit_sm_resp gave it) and whether the message was delivered.
	OnReceipt func(messageID string, delivered bool)
	Logger    *slog.Logger

	mu      sync.Mutex
	session *gosmpp.Session
	waiting map[int32]chan pdu.PDU
}

// Send submits m.Short to m.To (E.164), split into concatenated parts
// when longer than one SMS; the first part's id is the message's.
func (s *SMS) Send(ctx context.Context, m Message) (string, error) {
	to := strings.TrimPrefix(m.To, "+")
	if !e164.MatchString(m.To) {
		return "", Permanent(fmt.Errorf("sms: %q is not an E.164 number", m.To))
	}
	sess, err := s.bound()
	if err != nil {
		return "", fmt.Errorf("sms: %w", err)
	}
	sm := pdu.NewSubmitSM().(*pdu.SubmitSM)
	src := pdu.NewAddress()
	if alnum.MatchString(s.Source) {
		src.SetTon(data.GSM_TON_ALPHANUMERIC)
		src.SetNpi(data.GSM_NPI_UNKNOWN)
	} else {
		src.SetTon(data.GSM_TON_INTERNATIONAL)
		src.SetNpi(data.GSM_NPI_E164)
	}
	_ = src.SetAddress(s.Source)
	dst := pdu.NewAddress()
	dst.SetTon(data.GSM_TON_INTERNATIONAL)
	dst.SetNpi(data.GSM_NPI_E164)
	if err := dst.SetAddress(to); err != nil {
		return "", Permanent(fmt.Errorf("sms: %w", err))
	}
	sm.SourceAddr, sm.DestAddr = src, dst
	sm.RegisteredDelivery = 1 // a receipt for the final outcome
	if err := sm.Message.SetLongMessageWithEnc(m.Short, data.UCS2); err != nil {
		return "", Permanent(fmt.Errorf("sms: %w", err))
	}
	parts, err := sm.Split()
	if err != nil {
		return "", Permanent(fmt.Errorf("sms: %w", err))
	}
	var first string
	for i, part := range parts {
		part.AssignSequenceNumber() // Split copies the original's
		id, err := s.submit(ctx, sess, part)
		if err != nil {
			return "", err
		}
		if i == 0 {
			first = id
		}
	}
	return first, nil
}

var (
	e164  = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	alnum = regexp.MustCompile(`[A-Za-z]`)
)

// submit sends one submit_sm and waits for its response.
func (s *SMS) submit(ctx context.Context, sess *gosmpp.Session, sm *pdu.SubmitSM) (string, error) {
	seq := sm.GetSequenceNumber()
	ch := make(chan pdu.PDU, 1)
	s.mu.Lock()
	s.waiting[seq] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, seq)
		s.mu.Unlock()
	}()
	if err := sess.Transceiver().Submit(sm); err != nil {
		s.drop(sess)
		return "", fmt.Errorf("sms: %w", err)
	}
	select {
	case resp := <-ch:
		r, ok := resp.(*pdu.SubmitSMResp)
		status := resp.GetHeader().CommandStatus
		switch {
		case !ok:
			return "", fmt.Errorf("sms: the gateway answered %T", resp)
		case status == data.ESME_ROK:
			return r.MessageID, nil
		case status == data.ESME_RINVDSTADR || status == data.ESME_RINVDSTTON || status == data.ESME_RINVDSTNPI:
			return "", Permanent(fmt.Errorf("sms: the gateway refused the number: %s", status))
		default:
			return "", fmt.Errorf("sms: the gateway refused the message: %s", status)
		}
	case <-ctx.Done():
		s.drop(sess) // an unanswered submit: start over on a fresh bind
		return "", fmt.Errorf("sms: no answer from the gateway: %w", ctx.Err())
	}
}

// bound returns the session, binding one when there is none.
func (s *SMS) bound() (*gosmpp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session != nil {
		return s.session, nil
	}
	if s.waiting == nil {
		s.waiting = map[int32]chan pdu.PDU{}
	}
	var sess *gosmpp.Session
	sess, err := gosmpp.NewSession(
		gosmpp.TRXConnector(gosmpp.NonTLSDialer, gosmpp.Auth{SMSC: s.Addr, SystemID: s.SystemID, Password: s.Password, SystemType: s.SystemType}),
		gosmpp.Settings{
			EnquireLink: 30 * time.Second, ReadTimeout: 90 * time.Second, WriteTimeout: 10 * time.Second,
			OnPDU: s.onPDU,
			OnReceivingError: func(err error) {
				s.logger().Warn("sms: reading from the gateway", "err", err)
			},
			OnClosed: func(gosmpp.State) { s.drop(sess) },
		}, 0)
	if err != nil {
		return nil, err
	}
	s.session = sess
	return sess, nil
}

// drop forgets a session that failed, so that the next send binds anew.
func (s *SMS) drop(sess *gosmpp.Session) {
	s.mu.Lock()
	if s.session == sess && sess != nil {
		s.session = nil
		go func() { _ = sess.Close() }()
	}
	s.mu.Unlock()
}

// Close unbinds.
func (s *SMS) Close() error {
	s.mu.Lock()
	sess := s.session
	s.session = nil
	s.mu.Unlock()
	if sess == nil {
		return nil
	}
	return sess.Close()
}

func (s *SMS) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// onPDU routes what the gateway sends: responses to their submit, receipts
// to OnReceipt (gosmpp answers deliver_sm itself).
func (s *SMS) onPDU(p pdu.PDU, _ bool) {
	switch p := p.(type) {
	case *pdu.SubmitSMResp, *pdu.GenericNack:
		s.mu.Lock()
		ch := s.waiting[p.GetSequenceNumber()]
		s.mu.Unlock()
		if ch != nil {
			ch <- p
		}
	case *pdu.DeliverSM:
		if p.EsmClass&0x3c != 0x04 { // not an SMSC delivery receipt
			return
		}
		id, delivered, err := parseReceipt(p)
		if err != nil {
			s.logger().Warn("sms: unreadable delivery receipt", "err", err)
			return
		}
		if s.OnReceipt != nil {
			s.OnReceipt(id, delivered)
		}
	}
}

// parseReceipt reads a receipt's message id and outcome: the
// receipted_message_id TLV when present, else the text SMPP 3.4
// appendix B suggests ("id:… stat:DELIVRD …").
func parseReceipt(p *pdu.DeliverSM) (id string, delivered bool, err error) {
	text, err := p.Message.GetMessage()
	if err != nil {
		return "", false, err
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(text) {
		if k, v, ok := strings.Cut(f, ":"); ok {
			fields[strings.ToLower(k)] = v
		}
	}
	id = fields["id"]
	if tlv, ok := p.OptionalParameters[pdu.TagReceiptedMessageID]; ok {
		id = strings.TrimRight(string(tlv.Data), "\x00")
	}
	if id == "" {
		return "", false, errors.New("no message id")
	}
	return id, fields["stat"] == "DELIVRD", nil
}
