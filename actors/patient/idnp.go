package patient

// ValidIDNP reports whether s is a well-formed Moldovan IDNP: 13 ASCII
// digits whose last digit is CheckDigit of the first twelve.
func ValidIDNP(s string) bool {
	if len(s) != 13 {
		return false
	}
	for i := 0; i < 13; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return CheckDigit(s[:12]) == s[12]
}

// CheckDigit is the IDNP check digit of twelve ASCII digits: their sum
// weighted 7, 3, 1, 7, 3, 1, ... taken mod 10, as an ASCII digit.
func CheckDigit(first12 string) byte {
	weights := [3]int{7, 3, 1}
	sum := 0
	for i := 0; i < 12 && i < len(first12); i++ {
		sum += int(first12[i]-'0') * weights[i%3]
	}
	return byte('0' + sum%10)
}
