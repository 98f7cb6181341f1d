// Package search is the patient search's language: how a name, an IDNP or
// a phone number becomes the key the read model stores and a query
// matches. Moldovan names come in Romanian (with ă â î ș ț, and the
// cedilla forms ş ţ that old keyboards type) and in Russian Cyrillic; a
// receptionist types them with or without diacritics, in either script,
// with a typo. Fold makes the spellings of one name alike; the read model's
// trigram index forgives what is left (a typo, word order).
package search

import (
	"strings"
	"unicode"
)

// cyrillic is Russian transliterated as a Romanian reader spells it,
// towards the letters a keyboard without diacritics types (ш is ș is s,
// ц is ț is t). ч becomes 'č', which stays a soft c below, and г 'ğ',
// which stays a hard g (Георге is Gheorghe, not Gеorge read as Romanian).
var cyrillic = map[rune]string{
	'а': "a", 'б': "b", 'в': "v", 'г': "ğ", 'д': "d", 'е': "e", 'ё': "io", 'ж': "j", 'з': "z",
	'и': "i", 'й': "i", 'к': "k", 'л': "l", 'м': "m", 'н': "n", 'о': "o", 'п': "p", 'р': "r",
	'с': "s", 'т': "t", 'у': "u", 'ф': "f", 'х': "h", 'ц': "t", 'ч': "č", 'ш': "s", 'щ': "s",
	'ъ': "", 'ы': "i", 'ь': "", 'э': "e", 'ю': "iu", 'я': "ia",
	// The Moldovan Cyrillic alphabet's own letter (before 1989), for old records.
	'ӂ': "dj",
}

// latin folds Romanian and other Latin letters to their base letters.
var latin = map[rune]string{
	// â and î are one sound (spelled î before 1993): Sârbu is Sîrbu is Sirbu.
	'ă': "a", 'â': "i", 'î': "i", 'ș': "s", 'ş': "s", 'ț': "t", 'ţ': "t",
	'á': "a", 'à': "a", 'ä': "a", 'é': "e", 'è': "e", 'ë': "e", 'í': "i", 'ï': "i",
	'ó': "o", 'ö': "o", 'ô': "o", 'ú': "u", 'ü': "u", 'ç': "c", 'ñ': "n",
	'q': "k", 'w': "v", 'x': "ks", 'y': "i",
}

func isVowel(r rune) bool { return strings.ContainsRune("aeiou", r) }

// Fold returns s as the search compares names: lower case; diacritics,
// comma and cedilla forms folded; Cyrillic transliterated; and the
// Romanian spellings of sounds written alike with the Russian ones (c is
// k before a, o, u and consonants, "ce", "ci" stay soft, "che", "chi" are
// hard, a silent i after a soft c or g before a vowel goes, "ghe" is
// "ge"); runs of one letter become one; anything not a letter or digit
// separates words.
func Fold(s string) string {
	var base []rune
	for _, r := range strings.ToLower(s) {
		switch {
		case cyrillic[r] != "" || r == 'ъ' || r == 'ь':
			base = append(base, []rune(cyrillic[r])...)
		case latin[r] != "":
			base = append(base, []rune(latin[r])...)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			base = append(base, r)
		default:
			base = append(base, ' ')
		}
	}
	at := func(i int) rune {
		if i < len(base) {
			return base[i]
		}
		return 0
	}
	var out []rune
	emit := func(r rune) {
		if len(out) > 0 && out[len(out)-1] == r && r != ' ' && !unicode.IsDigit(r) {
			return // a double letter is one
		}
		if r == ' ' && (len(out) == 0 || out[len(out)-1] == ' ') {
			return
		}
		out = append(out, r)
	}
	for i := 0; i < len(base); i++ {
		r := base[i]
		switch {
		case (r == 'c' || r == 'g') && at(i+1) == 'h' && (at(i+2) == 'e' || at(i+2) == 'i'):
			// che, chi: a hard c (k); ghe, ghi: a hard g.
			if r == 'c' {
				emit('k')
			} else {
				emit('g')
			}
			i++
		case r == 'c' && (at(i+1) == 'e' || at(i+1) == 'i'):
			emit('č')
			if at(i+1) == 'i' && isVowel(at(i+2)) {
				i++ // "cio": the i only softens the c
			}
		case r == 'c':
			emit('k')
		case r == 'g' && (at(i+1) == 'e' || at(i+1) == 'i'):
			emit('d')
			emit('j')
			if at(i+1) == 'i' && isVowel(at(i+2)) {
				i++
			}
		case r == 'č' && at(i+1) == 'i' && isVowel(at(i+2)):
			emit('č')
			i++
		default:
			emit(r)
		}
	}
	return strings.NewReplacer("č", "c", "ğ", "g").Replace(strings.TrimSpace(string(out)))
}

// Digits keeps the digits of s: how an IDNP or a phone number is typed
// ("2005 0421 29809", "+373 (69) 000-001") is not what it is.
func Digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// Phone is a Moldovan phone number as the read model keeps it: its
// national significant number, without the country code (373) or the
// trunk prefix (0). Other numbers keep all their digits.
func Phone(s string) string {
	d := Digits(s)
	switch {
	case strings.HasPrefix(d, "00373") && len(d) == 13:
		return d[5:]
	case strings.HasPrefix(d, "373") && len(d) == 11:
		return d[3:]
	case strings.HasPrefix(d, "0") && len(d) == 9:
		return d[1:]
	}
	return d
}
