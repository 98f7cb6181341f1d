package identity

import (
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
