// Package seal encrypts small secrets kept in the database (TOTP secrets,
// token signing keys, later the patients' data keys) with the master key
// from the node's configuration: AES-256-GCM, a random nonce per value,
// and associated data that binds a sealed value to the row it belongs to,
// so a value copied into another row does not open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the master key's length: AES-256.
const KeySize = 32

// version prefixes every sealed value, so the scheme can change later.
const version byte = 1

// ErrOpen is returned for a value that was not sealed by this key for this
// associated data, or was altered.
var ErrOpen = errors.New("seal: cannot open value")

// Key seals and opens values with one master key.
type Key struct {
	aead   cipher.AEAD
	master []byte
}

// NewKey builds a Key from KeySize bytes.
func NewKey(master []byte) (*Key, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("seal: the master key must be %d bytes, got %d", KeySize, len(master))
	}
	block, err := aes.NewCipher(master)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead, master: bytes.Clone(master)}, nil
}

// Derive makes a key for another use (label names it) from the master key,
// so one configured secret serves several purposes without reusing a key.
func (k *Key) Derive(label string) [32]byte {
	m := hmac.New(sha256.New, k.master)
	m.Write([]byte("caregrid/" + label))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// Seal encrypts plaintext bound to aad (say, "totp/<account id>").
func (k *Key) Seal(plaintext []byte, aad string) []byte {
	out := make([]byte, 1+k.aead.NonceSize(), 1+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return k.aead.Seal(out, out[1:], plaintext, []byte(aad))
}

// Open decrypts what Seal made with the same aad.
func (k *Key) Open(sealed []byte, aad string) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(aad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// LoadKeyFile reads a hex-encoded master key from path. With create set, a
// missing file is made with a new random key (mode 0600): the embedded
// default's convenience. Production passes a key file it manages.
func LoadKeyFile(path string, create bool) (*Key, error) {
	master, err := ReadHexKey(path, KeySize, create)
	if err != nil {
		return nil, err
	}
	if len(master) != KeySize {
		return nil, fmt.Errorf("master key %s: want %d hex-encoded bytes", path, KeySize)
	}
	return NewKey(master)
}

// ReadHexKey reads a key of at least size bytes, hex-encoded, from path;
// with create set, a missing file is made (mode 0600) with size random bytes.
func ReadHexKey(path string, size int, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key := make([]byte, size)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < size {
		return nil, fmt.Errorf("key %s: want at least %d hex-encoded bytes", path, size)
	}
	return key, nil
}
