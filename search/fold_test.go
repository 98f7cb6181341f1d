package search

import "testing"

// TestSpellingsOfOneNameFoldAlike: the ways a Moldovan name is typed, in
// either script, with or without diacritics, fold to one key; different
// names do not.
func TestSpellingsOfOneNameFoldAlike(t *testing.T) {
	for _, same := range [][]string{
		{"Popescu", "popescu", "POPESCU", "Popesku", "Попеску"},
		{"Ștefan", "Stefan", "Ştefan", "Штефан"},
		{"Țurcanu", "Ţurcanu", "Turcanu", "Цуркану"},
		{"Ciobanu", "Чобану"},
		{"Ceban", "Чебан"},
		{"Gheorghe", "Георге"},
		{"Chiriac", "Кирияк"},
		{"Gicu", "Джику"},
		{"Rusu", "Русу", "Russu"},
		{"Sârbu", "Sîrbu", "Sirbu", "Сырбу"},
		{"Ion Popescu", "  ion   popescu ", "Ion-Popescu"},
	} {
		want := Fold(same[0])
		for _, s := range same[1:] {
			if got := Fold(s); got != want {
				t.Errorf("Fold(%q) = %q; Fold(%q) = %q", s, got, same[0], want)
			}
		}
	}
	for a, b := range map[string]string{"Popescu": "Popa", "Rusu": "Rotaru", "Ceban": "Cebotari"} {
		if Fold(a) == Fold(b) {
			t.Errorf("%q and %q fold alike", a, b)
		}
	}
	if got := Fold("Ion Popescu"); got != "ion popesku" {
		t.Errorf("Fold(Ion Popescu) = %q", got)
	}
}

func TestPhoneNumbersKeepTheirNationalNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+373 69 000 001": "69000001", "069000001": "69000001", "69000001": "69000001", "00373-69-000-001": "69000001",
		"(022) 123-456": "22123456", "+40 721 000 000": "40721000000",
	} {
		if got := Phone(in); got != want {
			t.Errorf("Phone(%q) = %q, want %q", in, got, want)
		}
	}
}
