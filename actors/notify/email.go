package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Email sends through an SMTP relay (go-smtp's client). The messages
// carry reset links and name appointments, so it insists on STARTTLS,
// except to a relay on the node's own host (a loopback address), where
// nothing crosses a network. With a username it authenticates (PLAIN,
// over TLS only).
//
// Each message's Message-ID is made from its notification id, so a
// message sent again after a member died mid-send is the same message to
// every mail system that de-duplicates by Message-ID.
type Email struct {
	Addr     string // host:port
	From     string // the sender, "caregrid <no-reply@hospital.example>"
	Username string
	Password string
	// TLS configures STARTTLS; nil verifies the relay's certificate for
	// Addr's host against the system's roots.
	TLS *tls.Config
}

// plainAllowed reports whether a message may go to addr without TLS: only
// to a relay on this host (a loopback address) and with no credentials to
// protect.
func plainAllowed(addr string, credentials bool) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && (host == "localhost" || net.ParseIP(host).IsLoopback()) && !credentials
}

// Send delivers m to m.To.
func (e Email) Send(ctx context.Context, m Message) (string, error) {
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return "", Permanent(fmt.Errorf("mail: sender %q: %w", e.From, err))
	}
	rcpt, err := mail.ParseAddress(m.To)
	if err != nil {
		return "", Permanent(fmt.Errorf("mail: recipient: %w", err))
	}
	msgID := m.ID
	if msgID == "" {
		id := make([]byte, 12)
		_, _ = rand.Read(id)
		msgID = hex.EncodeToString(id)
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	msgID = "<" + msgID + "@" + domain + ">"
	msg, err := compose(from, rcpt, msgID, m, time.Now())
	if err != nil {
		return "", Permanent(err)
	}
	var auth sasl.Client
	if e.Username != "" {
		auth = sasl.NewPlainClient("", e.Username, e.Password)
	}
	done := make(chan error, 1)
	go func() {
		if plainAllowed(e.Addr, auth != nil) {
			done <- sendPlain(e.Addr, from.Address, rcpt.Address, msg)
			return
		}
		done <- e.sendStartTLS(auth, from.Address, rcpt.Address, msg)
	}()
	select {
	case err := <-done:
		if err != nil {
			return "", smtpError(err)
		}
		return msgID, nil
	case <-ctx.Done():
		return "", fmt.Errorf("mail: %w", ctx.Err())
	}
}

// smtpError marks a 5xx answer to the recipient or the message as
// permanent: sending it again would be refused again.
func smtpError(err error) error {
	if se, ok := err.(*smtp.SMTPError); ok && se.Code >= 500 && se.Code != 530 && se.Code != 535 {
		return Permanent(fmt.Errorf("mail: %w", err))
	}
	return fmt.Errorf("mail: %w", err)
}

// sendStartTLS delivers over STARTTLS, which the relay must offer, and
// authenticates first when auth is set (as go-smtp's SendMail, with e.TLS).
func (e Email) sendStartTLS(auth sasl.Client, from, to string, msg []byte) error {
	c, err := smtp.DialStartTLS(e.Addr, e.TLS)
	if err != nil {
		return err
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// sendPlain delivers to a relay on loopback without TLS.
func sendPlain(addr, from, to string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// compose writes an RFC 5322 message: plain text, or text and HTML as
// multipart/alternative; quoted-printable, so any line length and
// character survive any relay.
func compose(from, to *mail.Address, msgID string, m Message, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\n",
		from.String(), to.String(), mime.QEncoding.Encode("utf-8", m.Subject), now.Format(time.RFC1123Z), msgID)
	if m.Language != "" {
		fmt.Fprintf(&b, "Content-Language: %s\r\n", m.Language)
	}
	if m.HTML == "" {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=%s\r\n\r\n", w.Boundary())
	for _, part := range []struct{ kind, text string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		p, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {part.kind + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, err
		}
		if err := writeQP(p, part.text); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

func writeQP(dst interface{ Write([]byte) (int, error) }, text string) error {
	w := quotedprintable.NewWriter(dst)
	if _, err := w.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n"))); err != nil {
		return err
	}
	return w.Close()
}

// LogSender writes messages to the log instead of sending them: for a
// development node without providers (never with real accounts: the log
// then holds working reset links).
type LogSender struct {
	Channel string
	Logger  *slog.Logger
}

// Send logs m.
func (l LogSender) Send(_ context.Context, m Message) (string, error) {
	text := m.Text
	if text == "" {
		text = m.Short
	}
	l.Logger.Warn("development notification (not sent)", "channel", l.Channel, "to", m.To, "subject", m.Subject, "text", text)
	return "log-" + m.ID, nil
}
