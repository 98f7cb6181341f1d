package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP follows RFC 6238 with the authenticator apps' defaults (SHA-1, six
// digits, 30 s), accepting one step either side for clock drift.

// NewTOTPKey makes a secret for account, named for the authenticator app.
func NewTOTPKey(issuer, account string) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account})
}

// TOTPKeyFromSecret rebuilds the key of a stored base32 secret.
func TOTPKeyFromSecret(issuer, account, secret string) (*otp.Key, error) {
	return otp.NewKeyFromURL("otpauth://totp/" + issuer + ":" + account + "?secret=" + secret + "&issuer=" + issuer)
}

// ValidTOTP reports whether code is the secret's code at now (±1 step).
func ValidTOTP(code, secret string, now time.Time) bool {
	_, ok := TOTPStep(code, secret, now)
	return ok
}

// TOTPStep finds the time step (now-1, now, now+1) whose code code is.
// The login stores the last step used, so a code cannot serve twice.
func TOTPStep(code, secret string, now time.Time) (int64, bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != 6 {
		return 0, false
	}
	step := now.UTC().Unix() / 30
	for _, s := range []int64{step - 1, step, step + 1} {
		ok, err := totp.ValidateCustom(code, secret, time.Unix(s*30, 0).UTC(), totp.ValidateOpts{Period: 30, Skew: 0, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && ok {
			return s, true
		}
	}
	return 0, false
}

// TOTPCode is the secret's code at now (tests and the enrolment check).
func TOTPCode(secret string, now time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, now.UTC(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// RecoveryCodeCount is how many recovery codes an enrolment hands out.
const RecoveryCodeCount = 10

var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRecoveryCodes makes single-use codes (50 random bits each, shown as
// xxxxx-xxxxx) and their hashes for storage, keyed with pepper (derived
// from the master key): 50 bits would fall to an offline search of a
// plain hash, not of one whose key the database does not hold.
func NewRecoveryCodes(pepper [32]byte) (codes []string, hashes [][]byte) {
	for range RecoveryCodeCount {
		b := make([]byte, 7)
		_, _ = rand.Read(b)
		s := strings.ToLower(recoveryEncoding.EncodeToString(b))[:10]
		codes = append(codes, s[:5]+"-"+s[5:])
		hashes = append(hashes, hashRecoveryCode(pepper, s))
	}
	return codes, hashes
}

// hashRecoveryCode is the keyed hash (HMAC-SHA256) of a code as typed,
// ignoring case, spaces and dashes.
func hashRecoveryCode(pepper [32]byte, code string) []byte {
	c := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
	m := hmac.New(sha256.New, pepper[:])
	m.Write([]byte(c))
	return m.Sum(nil)
}
