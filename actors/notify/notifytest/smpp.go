package notifytest

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// SMS is one short message the gateway accepted, its parts joined.
type SMS struct {
	From, To, Text, MessageID string
}

// SMPPServer is an SMS gateway (SMSC) speaking SMPP 3.4 on loopback: it
// binds transceivers with the expected credentials, answers submit_sm
// with a message id, joins concatenated parts, and sends a delivery
// receipt (deliver_sm) for every message that asked for one.
type SMPPServer struct {
	Addr               string
	SystemID, Password string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	sms     []SMS
	parts   map[string][]string // concatenation reference → parts
	next    int
	binds   int
	receipt bool
	got     chan struct{}
	t       testing.TB
}

// StartSMPP starts a gateway on a free loopback port (addr "") or addr.
func StartSMPP(t testing.TB, addr string) *SMPPServer {
	t.Helper()
	s := &SMPPServer{SystemID: "caregrid", Password: "smpp-pw", conns: map[net.Conn]bool{}, parts: map[string][]string{},
		receipt: true, got: make(chan struct{}, 1<<16), t: t}
	s.listen(addr)
	t.Cleanup(s.Stop)
	return s
}

func (s *SMPPServer) listen(addr string) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.ln, s.Addr = ln, ln.Addr().String()
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
}

// Stop closes the listener and every session: the gateway is down.
func (s *SMPPServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		_ = c.Close()
		delete(s.conns, c)
	}
}

// Restart listens again on the same address.
func (s *SMPPServer) Restart() { s.listen(s.Addr) }

// Messages are the messages received so far.
func (s *SMPPServer) Messages() []SMS {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMS(nil), s.sms...)
}

// Received is signalled once per whole message.
func (s *SMPPServer) Received() <-chan struct{} { return s.got }

func (s *SMPPServer) serve(c net.Conn) {
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	var wmu sync.Mutex
	write := func(p pdu.PDU) bool {
		b := pdu.NewBuffer(nil)
		p.Marshal(b)
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.Write(b.Bytes())
		return err == nil
	}
	bound := false
	for {
		p, err := pdu.Parse(c)
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *pdu.BindRequest:
			resp := p.GetResponse().(*pdu.BindResp)
			resp.SystemID = "notifytest"
			if p.SystemID != s.SystemID || p.Password != s.Password || p.BindingType != pdu.Transceiver {
				resp.CommandStatus = data.ESME_RBINDFAIL
				write(resp)
				return
			}
			bound = true
			s.mu.Lock()
			s.binds++
			s.mu.Unlock()
			write(resp)
		case *pdu.EnquireLink:
			write(p.GetResponse())
		case *pdu.Unbind:
			write(p.GetResponse())
			return
		case *pdu.SubmitSM:
			resp := p.GetResponse().(*pdu.SubmitSMResp)
			if !bound {
				resp.CommandStatus = data.ESME_RINVBNDSTS
				write(resp)
				continue
			}
			id, whole := s.take(p)
			resp.MessageID = id
			if !write(resp) {
				return
			}
			if whole != nil && p.RegisteredDelivery&1 == 1 && s.receipts() {
				write(receipt(whole))
			}
		}
	}
}

func (s *SMPPServer) receipts() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.receipt
}

// take keeps one part; it returns the part's id and, once every part is
// in, the whole message.
func (s *SMPPServer) take(p *pdu.SubmitSM) (string, *SMS) {
	text, err := p.Message.GetMessage()
	if err != nil {
		text = fmt.Sprintf("undecodable: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	id := fmt.Sprintf("smsc-%06d", s.next)
	total, seq, ref, concat := p.Message.UDH().GetConcatInfo()
	if concat && total > 1 {
		key := fmt.Sprintf("%s/%d", p.DestAddr.Address(), ref)
		parts := s.parts[key]
		if parts == nil {
			parts = make([]string, total)
		}
		parts[seq-1] = text
		s.parts[key] = parts
		for _, part := range parts {
			if part == "" {
				return id, nil
			}
		}
		delete(s.parts, key)
		text = ""
		for _, part := range parts {
			text += part
		}
		// The receipt names the first part's id, as the sender kept it.
		id = fmt.Sprintf("smsc-%06d", s.next-int(total)+1)
	}
	m := SMS{From: p.SourceAddr.Address(), To: "+" + p.DestAddr.Address(), Text: text, MessageID: id}
	s.sms = append(s.sms, m)
	select {
	case s.got <- struct{}{}:
	default: // nobody reads the signals (a benchmark counts Messages)
	}
	return fmt.Sprintf("smsc-%06d", s.next), &m
}

// receipt is the delivery receipt of m (SMPP 3.4 appendix B text, and
// the receipted_message_id TLV).
func receipt(m *SMS) pdu.PDU {
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.EsmClass = 0x04
	_ = d.SourceAddr.SetAddress(m.To[1:])
	_ = d.DestAddr.SetAddress(m.From)
	_ = d.Message.SetMessageWithEncoding(fmt.Sprintf("id:%s sub:001 dlvrd:001 submit date:2611270000 done date:2611270000 stat:DELIVRD err:000 text:", m.MessageID), data.GSM7BIT)
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagReceiptedMessageID, Data: append([]byte(m.MessageID), 0)})
	return d
}
