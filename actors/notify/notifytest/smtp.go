// Package notifytest runs the providers notifications go to as real
// servers on loopback, speaking their wire protocols: an SMTP server
// (go-smtp), an SMPP 3.4 gateway (gosmpp's PDUs) and a Web Push service
// that checks the VAPID signature and decrypts the payload (RFC 8291).
package notifytest

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Mail is one message the SMTP server accepted.
type Mail struct {
	From, To, MessageID, Subject, Language string
	Text, HTML                             string
}

// SMTPServer is a mail server that keeps what it receives and, like many
// mail systems, drops a message whose Message-ID it already has.
type SMTPServer struct {
	Addr string

	mu       sync.Mutex
	mails    []Mail
	seen     map[string]bool
	dupes    int
	failing  bool
	hold     chan struct{} // non-nil: DATA waits for it after keeping the mail
	received chan struct{}
	srv      *smtp.Server
	ln       net.Listener
}

// StartSMTP starts a server on a free loopback port (addr "" ) or addr.
func StartSMTP(t testing.TB, addr string) *SMTPServer {
	t.Helper()
	s := &SMTPServer{seen: map[string]bool{}, received: make(chan struct{}, 1<<16)}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	s.srv.Domain, s.srv.AllowInsecureAuth = "localhost", true
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *SMTPServer) Close() { _ = s.srv.Close() }

// Fail makes the server refuse messages with a temporary error (451), or
// accept them again.
func (s *SMTPServer) Fail(on bool) {
	s.mu.Lock()
	s.failing = on
	s.mu.Unlock()
}

// Hold makes DATA keep the mail and then not answer until Release: a
// sender that dies meanwhile never learns the mail arrived.
func (s *SMTPServer) Hold() {
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
}

// Release lets held DATA commands answer.
func (s *SMTPServer) Release() {
	s.mu.Lock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.mu.Unlock()
}

// Mails are the distinct messages received so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Duplicates is how many messages arrived again under a Message-ID the
// server already had.
func (s *SMTPServer) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dupes
}

// Received is signalled once per distinct message (while its buffer of
// 65536 has room).
func (s *SMTPServer) Received() <-chan struct{} { return s.received }

type smtpSession struct {
	s        *SMTPServer
	from, to string
}

func (x *smtpSession) Reset()        {}
func (x *smtpSession) Logout() error { return nil }
func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = to
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	x.s.mu.Lock()
	failing := x.s.failing
	x.s.mu.Unlock()
	if failing {
		_, _ = io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	m, err := readMail(msg)
	if err != nil {
		return err
	}
	m.From, m.To = x.from, x.to
	x.s.mu.Lock()
	if x.s.seen[m.MessageID] {
		x.s.dupes++
	} else {
		x.s.seen[m.MessageID] = true
		x.s.mails = append(x.s.mails, m)
		select {
		case x.s.received <- struct{}{}:
		default: // nobody reads the signals (a benchmark counts Mails)
		}
	}
	hold := x.s.hold
	x.s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return nil
}

func readMail(msg *mail.Message) (Mail, error) {
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return Mail{}, err
	}
	m := Mail{MessageID: msg.Header.Get("Message-ID"), Subject: subject, Language: msg.Header.Get("Content-Language")}
	if m.MessageID == "" {
		return Mail{}, errors.New("no Message-ID")
	}
	media, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return Mail{}, err
	}
	if !strings.HasPrefix(media, "multipart/") {
		b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		m.Text = strings.ReplaceAll(string(b), "\r\n", "\n")
		return m, err
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return Mail{}, err
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, p); err != nil { // multipart decodes quoted-printable itself
			return Mail{}, err
		}
		text := strings.ReplaceAll(b.String(), "\r\n", "\n")
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
			m.HTML = text
		} else {
			m.Text = text
		}
	}
}
