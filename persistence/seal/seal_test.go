package seal

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

func TestSealOpensOnlyWithItsKeyAndRow(t *testing.T) {
	k, err := NewKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKey(bytes.Repeat([]byte{8}, KeySize))
	secret := []byte("JBSWY3DPEHPK3PXP")
	sealed := k.Seal(secret, "totp/a")
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed value contains the plaintext")
	}
	if again := k.Seal(secret, "totp/a"); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := k.Open(sealed, "totp/a")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"other row":  func() ([]byte, error) { return k.Open(sealed, "totp/b") },
		"other key":  func() ([]byte, error) { return other.Open(sealed, "totp/a") },
		"tampered":   func() ([]byte, error) { return k.Open(tampered, "totp/a") },
		"truncated":  func() ([]byte, error) { return k.Open(sealed[:10], "totp/a") },
		"no version": func() ([]byte, error) { return k.Open(append([]byte{9}, sealed[1:]...), "totp/a") },
	} {
		if _, err := try(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
}

func TestLoadKeyFileCreatesOnceAndRejectsBadKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := LoadKeyFile(path, false); err == nil {
		t.Fatal("a missing key file without create was accepted")
	}
	k1, err := LoadKeyFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKeyFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open(k1.Seal([]byte("x"), "r"), "r"); err != nil {
		t.Fatalf("the key read back differs from the one created: %v", err)
	}
	if _, err := NewKey(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte master key was accepted")
	}
}
