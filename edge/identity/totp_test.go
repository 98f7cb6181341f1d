package identity

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTOTPStepAcceptsOneStepOfDriftEitherSide(t *testing.T) {
	key, err := NewTOTPKey("caregrid", "ana")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 15, 0, time.UTC)
	step := now.Unix() / 30
	for offset, want := range map[int64]bool{-2: false, -1: true, 0: true, 1: true, 2: false} {
		code, err := TOTPCode(key.Secret(), time.Unix((step+offset)*30, 0))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := TOTPStep(code, key.Secret(), now)
		if ok != want || (ok && got != step+offset) {
			t.Errorf("code of step %+d: step %d, %v; want %v", offset, got-step, ok, want)
		}
	}
	if _, ok := TOTPStep("12345", key.Secret(), now); ok {
		t.Error("a five-digit code passed")
	}
}

func TestRecoveryCodesAreKeyedAndForgiveTyping(t *testing.T) {
	var p1, p2 [32]byte
	p2[0] = 1
	codes, hashes := NewRecoveryCodes(p1)
	if len(codes) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	typed := strings.ToUpper(strings.ReplaceAll(codes[0], "-", " "))
	if !bytes.Equal(hashRecoveryCode(p1, typed), hashes[0]) {
		t.Error("the code typed in capitals with a space does not match")
	}
	if bytes.Equal(hashRecoveryCode(p2, codes[0]), hashes[0]) {
		t.Error("another key gives the same hash: the hash is not keyed")
	}
}
