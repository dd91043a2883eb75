package cypher

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tInt
	tFloat
	tString
	tParam
	tPunct // operators and punctuation; text in tok.text
)

type token struct {
	kind   tokKind
	text   string // identifier name (unquoted), punctuation, parameter name
	val    Value  // literal value for tInt, tFloat, tString
	quoted bool   // backtick-quoted identifier: never a keyword
	pos    Pos
	off    int // byte offset of the token start
	end    int // byte offset just after the token
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tIdent:
		if t.quoted {
			return "`" + t.text + "`"
		}
		return "'" + t.text + "'"
	case tString:
		return "string literal"
	case tInt, tFloat:
		return "number"
	case tParam:
		return "'$" + t.text + "'"
	}
	return "'" + t.text + "'"
}

type lexer struct {
	src  string
	i    int
	line int
	col  int
}

func (lx *lexer) errAt(p Pos, msg string) error {
	return &SyntaxError{Line: p.Line, Column: p.Column, Msg: msg}
}

func (lx *lexer) advance(n int) {
	for k := 0; k < n && lx.i < len(lx.src); {
		r, size := utf8.DecodeRuneInString(lx.src[lx.i:])
		lx.i += size
		k += size
		if r == '\n' {
			lx.line++
			lx.col = 1
		} else {
			lx.col++
		}
	}
}

func (lx *lexer) pos() Pos { return Pos{lx.line, lx.col} }

// lex splits src into tokens.
func lex(src string) ([]token, error) {
	lx := &lexer{src: src, line: 1, col: 1}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, size := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		lx.advance(i)
		return nil, lx.errAt(lx.pos(), "invalid UTF-8 in query text")
	}
	var toks []token
	for {
		if err := lx.skipSpace(); err != nil {
			return nil, err
		}
		if lx.i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: lx.pos(), off: lx.i, end: lx.i})
			return toks, nil
		}
		t, err := lx.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
	}
}

func (lx *lexer) skipSpace() error {
	for lx.i < len(lx.src) {
		c := lx.src[lx.i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			lx.advance(1)
		case c == '/' && strings.HasPrefix(lx.src[lx.i:], "//"):
			for lx.i < len(lx.src) && lx.src[lx.i] != '\n' {
				lx.advance(1)
			}
		case c == '/' && strings.HasPrefix(lx.src[lx.i:], "/*"):
			p := lx.pos()
			end := strings.Index(lx.src[lx.i+2:], "*/")
			if end < 0 {
				return lx.errAt(p, "unterminated comment")
			}
			lx.advance(end + 4)
		case c >= utf8.RuneSelf:
			r, _ := utf8.DecodeRuneInString(lx.src[lx.i:])
			if !unicode.IsSpace(r) {
				return nil
			}
			lx.advance(1)
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(r rune) bool {
	return r == '_' || unicode.IsLetter(r)
}

func isIdentPart(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

var twoCharOps = []string{"<>", "<=", ">=", "=~", "..", "!="}

func (lx *lexer) next() (token, error) {
	p := lx.pos()
	start := lx.i
	mk := func(k tokKind, text string, val Value) token {
		return token{kind: k, text: text, val: val, pos: p, off: start, end: lx.i}
	}
	c := lx.src[lx.i]
	r, size := utf8.DecodeRuneInString(lx.src[lx.i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return token{}, lx.errAt(p, "invalid UTF-8 in query text")
	case isIdentStart(r):
		j := lx.i
		for j < len(lx.src) {
			r2, s2 := utf8.DecodeRuneInString(lx.src[j:])
			if !isIdentPart(r2) {
				break
			}
			j += s2
		}
		text := lx.src[lx.i:j]
		lx.advance(j - lx.i)
		return mk(tIdent, text, nil), nil
	case c == '`':
		var b strings.Builder
		lx.advance(1)
		for {
			if lx.i >= len(lx.src) {
				return token{}, lx.errAt(p, "unterminated quoted identifier")
			}
			if lx.src[lx.i] == '`' {
				if lx.i+1 < len(lx.src) && lx.src[lx.i+1] == '`' {
					b.WriteByte('`')
					lx.advance(2)
					continue
				}
				lx.advance(1)
				break
			}
			_, s := utf8.DecodeRuneInString(lx.src[lx.i:])
			b.WriteString(lx.src[lx.i : lx.i+s])
			lx.advance(s)
		}
		if b.Len() == 0 {
			return token{}, lx.errAt(p, "empty quoted identifier")
		}
		t := mk(tIdent, b.String(), nil)
		t.quoted = true
		return t, nil
	case c >= '0' && c <= '9' || (c == '.' && lx.i+1 < len(lx.src) && lx.src[lx.i+1] >= '0' && lx.src[lx.i+1] <= '9'):
		return lx.number(p)
	case c == '\'' || c == '"':
		s, err := lx.str(p, c)
		if err != nil {
			return token{}, err
		}
		return mk(tString, "", s), nil
	case c == '$':
		lx.advance(1)
		if lx.i >= len(lx.src) {
			return token{}, lx.errAt(p, "expected a parameter name after '$'")
		}
		if lx.src[lx.i] == '`' {
			t, err := lx.next()
			if err != nil {
				return token{}, err
			}
			return token{kind: tParam, text: t.text, pos: p, off: start, end: lx.i}, nil
		}
		j := lx.i
		for j < len(lx.src) {
			r2, s2 := utf8.DecodeRuneInString(lx.src[j:])
			if !isIdentPart(r2) {
				break
			}
			j += s2
		}
		if j == lx.i {
			return token{}, lx.errAt(p, "expected a parameter name after '$'")
		}
		name := lx.src[lx.i:j]
		lx.advance(j - lx.i)
		return mk(tParam, name, nil), nil
	}
	for _, op := range twoCharOps {
		if strings.HasPrefix(lx.src[lx.i:], op) {
			lx.advance(2)
			if op == "!=" {
				op = "<>"
			}
			return mk(tPunct, op, nil), nil
		}
	}
	if strings.ContainsRune("()[]{},:;.|&+-*/%^=<>!", r) && r < utf8.RuneSelf {
		lx.advance(1)
		return mk(tPunct, string(c), nil), nil
	}
	// Unicode dashes and arrows some editors substitute are not Cypher here.
	return token{}, lx.errAt(p, "unexpected character "+strconv.QuoteRune(r))
}

func (lx *lexer) number(p Pos) (token, error) {
	start := lx.i
	s := lx.src
	j := lx.i
	if s[j] == '0' && j+1 < len(s) && (s[j+1] == 'x' || s[j+1] == 'X' || s[j+1] == 'o' || s[j+1] == 'O') {
		base := 16
		if s[j+1] == 'o' || s[j+1] == 'O' {
			base = 8
		}
		j += 2
		k := j
		for k < len(s) && (isHexDigit(s[k]) || s[k] == '_') {
			k++
		}
		text := strings.ReplaceAll(s[j:k], "_", "")
		lx.advance(k - start)
		n, err := strconv.ParseInt(text, base, 64)
		if err != nil {
			return token{}, lx.errAt(p, "invalid integer literal "+strconv.Quote(s[start:k]))
		}
		return token{kind: tInt, val: n, pos: p, off: start, end: lx.i}, nil
	}
	isFloat := false
	digits := func() {
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
			j++
		}
	}
	digits()
	if j+1 < len(s) && s[j] == '.' && s[j+1] >= '0' && s[j+1] <= '9' {
		isFloat = true
		j++
		digits()
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && s[k] >= '0' && s[k] <= '9' {
			isFloat = true
			j = k
			digits()
		}
	}
	// An identifier character right after a number (1abc) is an error.
	if j < len(s) {
		if r, _ := utf8.DecodeRuneInString(s[j:]); isIdentStart(r) {
			lx.advance(j - start)
			return token{}, lx.errAt(p, "invalid number literal "+strconv.Quote(s[start:j+1]))
		}
	}
	text := strings.ReplaceAll(s[start:j], "_", "")
	lx.advance(j - start)
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !isRangeErr(err) {
			return token{}, lx.errAt(p, "invalid float literal "+strconv.Quote(text))
		}
		return token{kind: tFloat, val: f, pos: p, off: start, end: lx.i}, nil
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		if isRangeErr(err) && text == "9223372036854775808" {
			// Only valid as the operand of unary minus; the parser folds it.
			return token{kind: tInt, text: text, val: nil, pos: p, off: start, end: lx.i}, nil
		}
		return token{}, lx.errAt(p, "integer literal "+text+" does not fit in 64 bits")
	}
	return token{kind: tInt, val: n, pos: p, off: start, end: lx.i}, nil
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (lx *lexer) str(p Pos, quote byte) (string, error) {
	lx.advance(1)
	var b strings.Builder
	for {
		if lx.i >= len(lx.src) {
			return "", lx.errAt(p, "unterminated string literal")
		}
		c := lx.src[lx.i]
		if c == quote {
			lx.advance(1)
			return b.String(), nil
		}
		if c != '\\' {
			_, s := utf8.DecodeRuneInString(lx.src[lx.i:])
			b.WriteString(lx.src[lx.i : lx.i+s])
			lx.advance(s)
			continue
		}
		ep := lx.pos()
		if lx.i+1 >= len(lx.src) {
			return "", lx.errAt(p, "unterminated string literal")
		}
		e := lx.src[lx.i+1]
		lx.advance(2)
		switch e {
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'u', 'U':
			n := 4
			if e == 'U' {
				n = 8
			}
			if lx.i+n > len(lx.src) {
				return "", lx.errAt(ep, "invalid unicode escape")
			}
			v, err := strconv.ParseUint(lx.src[lx.i:lx.i+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", lx.errAt(ep, "invalid unicode escape")
			}
			b.WriteRune(rune(v))
			lx.advance(n)
		default:
			return "", lx.errAt(ep, "invalid escape sequence \\"+string(e))
		}
	}
}
