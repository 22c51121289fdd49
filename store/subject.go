package store

import (
	"errors"
	"fmt"
	"strings"
)

// MaxSubjectPatternLength bounds a subject pattern, and with it the cost of
// matching one.
const MaxSubjectPatternLength = 256

// MaxSubjectPatternWildcards bounds the wildcards of a pattern, which
// bound the work per byte of subject.
const MaxSubjectPatternWildcards = 8

// MatchSubject reports whether sub matches the glob pattern. "*" matches
// one or more characters other than ':' and '/', so that it stays within
// one segment of the subject ("system:serviceaccount:prod:*" matches the
// service accounts of namespace prod, and no deeper name); "**" matches one
// or more characters of any kind ("repo:acme/app:ref:refs/heads/**" matches
// every branch, "feature/x" included). Every other character matches
// itself, byte for byte. Matching costs O(len(pattern) × len(sub)) and
// never backtracks.
func MatchSubject(pattern, sub string) bool {
	// The literal text before the first and after the last wildcard must
	// be there as is: most subjects fail here, at the cost of a compare.
	first, last := strings.IndexByte(pattern, '*'), strings.LastIndexByte(pattern, '*')
	if first < 0 {
		return pattern == sub
	}
	prefix, suffix := pattern[:first], pattern[last+1:]
	if len(sub) < len(prefix)+len(suffix)+1 || !strings.HasPrefix(sub, prefix) || !strings.HasSuffix(sub, suffix) {
		return false
	}
	toks := compileSubjectPattern(pattern)
	n := len(toks)
	// cur[i]: after the bytes read so far, the match can stand before
	// token i. Small patterns stay on the stack.
	var bufA, bufB [64]bool
	cur, next := bufA[:0], bufB[:0]
	if n+1 > len(bufA) {
		cur, next = make([]bool, 0, n+1), make([]bool, 0, n+1)
	}
	cur, next = cur[:n+1], next[:n+1]
	cur[0] = true
	closeOver(toks, cur)
	for i := 0; i < len(sub); i++ {
		b := sub[i]
		clear(next)
		alive := false
		for j := 0; j < n; j++ {
			if !cur[j] {
				continue
			}
			t := toks[j]
			switch {
			case t.kind == tokLiteral:
				if b == t.c {
					next[j+1] = true
				}
			case !t.accepts(b):
			case t.kind == tokOne:
				next[j+1] = true
			default: // tokMany stays put; closeOver moves it on.
				next[j] = true
			}
		}
		closeOver(toks, next)
		for _, on := range next {
			alive = alive || on
		}
		if !alive {
			return false
		}
		cur, next = next, cur
	}
	return cur[n]
}

type tokKind uint8

const (
	tokLiteral tokKind = iota // the byte c
	tokOne                    // one byte of the class
	tokMany                   // zero or more bytes of the class
)

// subjectTok is one step of a compiled pattern. A "*" becomes tokOne then
// tokMany over the segment class; a "**" the same over every byte.
type subjectTok struct {
	kind tokKind
	c    byte
	all  bool // class: every byte; otherwise every byte but ':' and '/'
}

func (t subjectTok) accepts(b byte) bool {
	return t.all || (b != ':' && b != '/')
}

func compileSubjectPattern(p string) []subjectTok {
	toks := make([]subjectTok, 0, len(p)+2)
	for i := 0; i < len(p); i++ {
		if p[i] != '*' {
			toks = append(toks, subjectTok{kind: tokLiteral, c: p[i]})
			continue
		}
		all := i+1 < len(p) && p[i+1] == '*'
		if all {
			i++
		}
		toks = append(toks, subjectTok{kind: tokOne, all: all}, subjectTok{kind: tokMany, all: all})
	}
	return toks
}

// closeOver lets the match step over tokMany tokens without reading.
func closeOver(toks []subjectTok, states []bool) {
	for j := range toks {
		if states[j] && toks[j].kind == tokMany {
			states[j+1] = true
		}
	}
}

// CheckSubjectPattern reports what is wrong with a subject pattern: it
// must hold a wildcard (an exact subject belongs in subjects), some literal
// text (a bare wildcard is any_subject in disguise), no "***", at most
// MaxSubjectPatternWildcards wildcards and at most MaxSubjectPatternLength
// bytes.
func CheckSubjectPattern(p string) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case len(p) > MaxSubjectPatternLength:
		return fmt.Errorf("is longer than %d bytes", MaxSubjectPatternLength)
	case !strings.Contains(p, "*"):
		return fmt.Errorf("%q has no wildcard; list exact subjects in subjects", p)
	case strings.Contains(p, "***"):
		return fmt.Errorf("%q: \"***\" is ambiguous; use \"*\" (one segment) or \"**\" (anything)", p)
	case strings.Trim(p, "*") == "":
		return fmt.Errorf("%q matches every subject; set any_subject instead", p)
	case strings.Count(strings.ReplaceAll(p, "**", "*"), "*") > MaxSubjectPatternWildcards:
		return fmt.Errorf("%q has more than %d wildcards", p, MaxSubjectPatternWildcards)
	}
	return nil
}
