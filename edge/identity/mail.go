package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mailer sends the login pages' emails (reset and verification links).
// Reliable delivery with retries belongs to the notifications work; here a
// failed send is reported to the user, who can ask again.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// SMTPMailer sends through an SMTP server (go-smtp's client). The links it
// sends open accounts, so it insists on STARTTLS, except to a relay on the
// node's own host (a loopback address), where nothing crosses a network.
// With a username it authenticates (PLAIN, over TLS only).
type SMTPMailer struct {
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
	return err == nil && isLoopback(host) && !credentials
}

func (m SMTPMailer) Send(ctx context.Context, to, subject, body string) error {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fmt.Errorf("mail: sender %q: %w", m.From, err)
	}
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		return fmt.Errorf("mail: recipient: %w", err)
	}
	msg, err := compose(from, rcpt, subject, body, time.Now())
	if err != nil {
		return err
	}
	var auth sasl.Client
	if m.Username != "" {
		auth = sasl.NewPlainClient("", m.Username, m.Password)
	}
	done := make(chan error, 1)
	go func() {
		if plainAllowed(m.Addr, auth != nil) {
			done <- sendPlain(m.Addr, from.Address, rcpt.Address, msg)
			return
		}
		done <- m.sendStartTLS(auth, from.Address, rcpt.Address, msg)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mail: %w", ctx.Err())
	}
}

// sendStartTLS delivers over STARTTLS, which the relay must offer, and
// authenticates first when auth is set (as go-smtp's SendMail, with m.TLS).
func (m SMTPMailer) sendStartTLS(auth sasl.Client, from, to string, msg []byte) error {
	c, err := smtp.DialStartTLS(m.Addr, m.TLS)
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

// compose writes a plain-text RFC 5322 message, quoted-printable so any
// line length and character survive any relay.
func compose(from, to *mail.Address, subject, body string, now time.Time) ([]byte, error) {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n",
		from.String(), to.String(), mime.QEncoding.Encode("utf-8", subject), now.Format(time.RFC1123Z), hex.EncodeToString(id), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(&b)
	if _, err := w.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// LogMailer writes emails to the log instead of sending them: for a
// development node without SMTP (never with real accounts: the log then
// holds working reset links).
type LogMailer struct{ Logger *slog.Logger }

func (m LogMailer) Send(_ context.Context, to, subject, body string) error {
	m.Logger.Warn("development mail (not sent)", "to", to, "subject", subject, "body", body)
	return nil
}
