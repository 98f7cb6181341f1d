package patient

// ValidIDNP reports whether s is a well-formed Moldovan IDNP: 13 ASCII
// digits whose last digit is the check digit, the sum of the first twelve
// weighted 7, 3, 1, 7, 3, 1, ... taken mod 10.
func ValidIDNP(s string) bool {
	if len(s) != 13 {
		return false
	}
	weights := [3]int{7, 3, 1}
	sum := 0
	for i := 0; i < 13; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		if i < 12 {
			sum += int(c-'0') * weights[i%3]
		}
	}
	return sum%10 == int(s[12]-'0')
}
