package identity

import (
	"errors"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
)

// passwordParams are argon2id's costs: OWASP's 46 MiB, one pass, one
// thread. A login costs one hash, so these bound a node's login rate
// (about 20 a second per core) as much as they slow an offline attacker.
var passwordParams = &argon2id.Params{Memory: 46 * 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Password rules: long enough to resist guessing, short enough that a
// hash request cannot be used to burn CPU.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 128
)

// CheckPasswordRules says what is wrong with a new password, or nil.
func CheckPasswordRules(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid text")
	case n < MinPasswordLength:
		return errors.New("the password must have at least 12 characters")
	case n > MaxPasswordLength:
		return errors.New("the password must have at most 128 characters")
	}
	return nil
}

// HashPassword returns pw's argon2id hash in PHC form.
func HashPassword(pw string) (string, error) { return argon2id.CreateHash(pw, passwordParams) }

// dummyHash is verified against when an account does not exist, so a
// login for an unknown name takes as long as one for a known name.
var dummyHash, _ = HashPassword("caregrid-no-such-account")

// VerifyPassword reports whether pw matches hash (constant time); an empty
// hash (no password set) never matches.
func VerifyPassword(pw, hash string) bool {
	if hash == "" || len(pw) > 4*MaxPasswordLength {
		_, _ = argon2id.ComparePasswordAndHash(pw, dummyHash)
		return false
	}
	ok, err := argon2id.ComparePasswordAndHash(pw, hash)
	return err == nil && ok
}
