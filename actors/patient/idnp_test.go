package patient

import "testing"

func TestValidIDNP(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"2005042129809", true},  // the example
		{"0000000000000", true},  // all zeros: sum 0, check 0
		{"1000000000007", true},  // 1*7 = 7
		{"0100000000003", true},  // 1*3 = 3
		{"0010000000001", true},  // 1*1 = 1
		{"2005042129808", false}, // wrong check digit
		{"2005042129800", false},
		{"200504212980", false},   // 12 digits
		{"20050421298090", false}, // 14 digits
		{"2005042129a09", false},  // a letter
		{"200504212980 ", false},  // trailing space
		{"", false},
		{"２００５０４２１２９８０９", false}, // full-width digits
	}
	for _, tt := range tests {
		if got := ValidIDNP(tt.in); got != tt.want {
			t.Errorf("ValidIDNP(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzValidIDNP checks ValidIDNP against a second, independent reading of
// the rule and that any accepted value changes validity when one digit moves.
func FuzzValidIDNP(f *testing.F) {
	for _, s := range []string{"2005042129809", "0000000000000", "abc", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := ValidIDNP(s)
		want := len(s) == 13
		sum := 0
		for i, r := range []byte(s) {
			if r < '0' || r > '9' {
				want = false
				break
			}
			if i < 12 {
				sum += int(r-'0') * []int{7, 3, 1}[i%3]
			}
		}
		if want {
			want = sum%10 == int(s[12]-'0')
		}
		if got != want {
			t.Fatalf("ValidIDNP(%q) = %v, want %v", s, got, want)
		}
		if got {
			b := []byte(s)
			b[12] = '0' + (b[12]-'0'+1)%10
			if ValidIDNP(string(b)) {
				t.Fatalf("ValidIDNP(%q) accepts a changed check digit", b)
			}
		}
	})
}
