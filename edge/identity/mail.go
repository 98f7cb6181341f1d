package identity

import (
	"context"
	"log/slog"
)

// Mailer sends the login pages' emails (reset and verification links, a
// sign-in from a new device). A node hands the provider the notifications'
// queue: the request only writes the message, and the dispatchers send it
// with retries (notify.Email over SMTP).
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// LogMailer writes emails to the log instead of sending them: for a
// development node without SMTP (never with real accounts: the log then
// holds working reset links).
type LogMailer struct{ Logger *slog.Logger }

func (m LogMailer) Send(_ context.Context, to, subject, body string) error {
	m.Logger.Warn("development mail (not sent)", "to", to, "subject", subject, "body", body)
	return nil
}
