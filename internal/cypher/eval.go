package cypher

import (
	"errors"
	"math"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// errNoPrevious aborts the evaluation of a previousValue argument when an
// element it reads has no previous version.
var errNoPrevious = errors.New("no previous version")

var emptyEnv Env

// Eval evaluates a compiled expression against env (nil means the empty
// Env). It is safe for concurrent use with distinct or unchanging Envs and
// allocates only for values it builds (strings, lists, maps, temporal
// results); filters over properties, comparisons and boolean logic do not
// allocate.
//
// Errors are *EvalError wrapping ErrType, ErrOverflow, ErrDivisionByZero,
// ErrInvalidArgument or ErrMissingParameter. An expression that was not
// compiled by Compile/Analyze evaluates function calls as unknown (an error).
func Eval(e Expr, env *Env) (Value, error) {
	if env == nil {
		env = &emptyEnv
	}
	ev := evaluator{env: env}
	return ev.eval(e)
}

// EvalPredicate evaluates a WHERE condition: true only when the value is
// true; false or null are false; a nil expression is true. A value that is
// neither boolean nor null is an ErrType error.
func EvalPredicate(e Expr, env *Env) (bool, error) {
	if e == nil {
		return true, nil
	}
	v, err := Eval(e, env)
	if err != nil {
		return false, err
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, typeErr("WHERE expects a boolean but got " + TypeName(v))
}

type evaluator struct {
	env    *Env
	locals []Value
	prev   bool // inside drasi.previousValue: elements read as their previous version
	steps  int  // list comprehension and quantifier iterations so far
}

// MaxIterations bounds the list comprehension and quantifier iterations of
// one Eval call, so that nested comprehensions cannot run for ever; beyond
// it Eval returns an ErrInvalidArgument error.
const MaxIterations = 1_000_000

func (ev *evaluator) step() error {
	ev.steps++
	if ev.steps > MaxIterations {
		return argErr("evaluation exceeds " + itoa(MaxIterations) + " list iterations")
	}
	return nil
}

func (ev *evaluator) eval(e Expr) (Value, error) {
	switch x := e.(type) {
	case *Literal:
		return x.Value, nil
	case *Variable:
		var v Value
		if x.Scope == ScopeLocal {
			if x.Index >= len(ev.locals) {
				return nil, typeErr("local variable " + x.Name + " used outside its comprehension")
			}
			return ev.locals[x.Index], nil
		}
		if x.Index < 0 || x.Index >= len(ev.env.Row) {
			return nil, typeErr("variable " + x.Name + " is not bound (slot " + itoa(x.Index) + ", row of " + itoa(len(ev.env.Row)) + ")")
		}
		v = ev.env.Row[x.Index]
		if ev.prev {
			return ev.previous(v)
		}
		return v, nil
	case *KeyRef:
		if x.Key < 0 || x.Key >= len(ev.env.Keys) {
			return nil, typeErr("grouping key " + itoa(x.Key) + " is not bound")
		}
		v := ev.env.Keys[x.Key]
		if ev.prev {
			return ev.previous(v)
		}
		return v, nil
	case *Param:
		v, ok := ev.env.Params[x.Name]
		if !ok {
			return nil, &EvalError{Msg: "parameter $" + x.Name + " is not set", kind: ErrMissingParameter}
		}
		return v, nil
	case *Property:
		v, err := ev.eval(x.X)
		if err != nil {
			return nil, err
		}
		return property(v, x.Key)
	case *Binary:
		return ev.binary(x)
	case *Unary:
		v, err := ev.eval(x.X)
		if err != nil {
			return nil, err
		}
		switch x.Op {
		case OpNot:
			switch b := v.(type) {
			case nil:
				return nil, nil
			case bool:
				return !b, nil
			}
			return nil, typeErr("cannot apply NOT to " + TypeName(v))
		case OpNeg:
			return opNeg(v)
		default:
			if v == nil || isNumber(v) {
				return v, nil
			}
			if _, ok := v.(Duration); ok {
				return v, nil
			}
			return nil, typeErr("cannot apply unary + to " + TypeName(v))
		}
	case *IsNull:
		v, err := ev.eval(x.X)
		if err != nil {
			return nil, err
		}
		return (v == nil) != x.Not, nil
	case *Call:
		return ev.call(x)
	case *Index:
		return ev.index(x)
	case *Slice:
		return ev.slice(x)
	case *HasLabels:
		v, err := ev.eval(x.X)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, nil
		}
		el, ok := v.(Element)
		if !ok {
			return nil, typeErr("cannot test labels of " + TypeName(v))
		}
		return hasAllLabels(el, x.Labels), nil
	case *ListLit:
		out := make([]Value, len(x.Elems))
		for i, el := range x.Elems {
			v, err := ev.eval(el)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *MapLit:
		out := make(map[string]Value, len(x.Keys))
		for i, k := range x.Keys {
			v, err := ev.eval(x.Values[i])
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case *Case:
		return ev.caseExpr(x)
	case *Comprehension:
		return ev.comprehension(x)
	case *Quantifier:
		return ev.quantifier(x)
	case nil:
		return nil, typeErr("nil expression")
	}
	return nil, typeErr("unknown expression node")
}

// previous maps an element to its previous version in previousValue mode.
func (ev *evaluator) previous(v Value) (Value, error) {
	el, ok := v.(Element)
	if !ok {
		return v, nil
	}
	if ev.env.Host == nil {
		return nil, errNoPrevious
	}
	p, ok := ev.env.Host.PreviousVersion(el)
	if !ok || p == nil {
		return nil, errNoPrevious
	}
	return p, nil
}

func hasAllLabels(el Element, want []string) bool {
	have := el.Labels()
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// MatchesLabels reports whether el satisfies a label expression given as a
// conjunction of disjunctions (NodePattern.Labels, NodeSlot.Labels).
func MatchesLabels(el Element, labels [][]string) bool {
	have := el.Labels()
	for _, any := range labels {
		found := false
	outer:
		for _, w := range any {
			for _, h := range have {
				if h == w {
					found = true
					break outer
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func property(v Value, key string) (Value, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case Element:
		p, _ := x.Property(key)
		return p, nil
	case map[string]Value:
		return x[key], nil
	case Date, LocalDateTime, DateTime, Duration:
		if r, ok := temporalField(v, key); ok {
			return r, nil
		}
		return nil, typeErr("unknown component '" + key + "' of " + TypeName(v))
	}
	return nil, typeErr("cannot read property '" + key + "' of " + TypeName(v))
}

func truth(v Value, op string) (val, isNull bool, err error) {
	switch b := v.(type) {
	case bool:
		return b, false, nil
	case nil:
		return false, true, nil
	}
	return false, false, typeErr("cannot apply " + op + " to " + TypeName(v))
}

func (ev *evaluator) binary(x *Binary) (Value, error) {
	l, err := ev.eval(x.L)
	if err != nil {
		return nil, err
	}
	switch x.Op {
	case OpAnd, OpOr:
		lv, ln, err := truth(l, x.Op.String())
		if err != nil {
			return nil, err
		}
		if !ln && lv == (x.Op == OpOr) { // false AND _, true OR _
			return lv, nil
		}
		r, err := ev.eval(x.R)
		if err != nil {
			return nil, err
		}
		rv, rn, err := truth(r, x.Op.String())
		if err != nil {
			return nil, err
		}
		if !rn && rv == (x.Op == OpOr) {
			return rv, nil
		}
		if ln || rn {
			return nil, nil
		}
		return rv, nil
	}
	r, err := ev.eval(x.R)
	if err != nil {
		return nil, err
	}
	switch x.Op {
	case OpXor:
		lv, ln, err := truth(l, "XOR")
		if err != nil {
			return nil, err
		}
		rv, rn, err := truth(r, "XOR")
		if err != nil {
			return nil, err
		}
		if ln || rn {
			return nil, nil
		}
		return lv != rv, nil
	case OpEq, OpNe:
		eq, isNull := Equal(l, r)
		if isNull {
			return nil, nil
		}
		return eq == (x.Op == OpEq), nil
	case OpLt, OpLe, OpGt, OpGe:
		o := order(l, r)
		switch o {
		case ordNull:
			return nil, nil
		case ordUnordered:
			return false, nil
		}
		switch x.Op {
		case OpLt:
			return o < 0, nil
		case OpLe:
			return o <= 0, nil
		case OpGt:
			return o > 0, nil
		}
		return o >= 0, nil
	case OpAdd:
		return opAdd(l, r)
	case OpSub:
		return opSub(l, r)
	case OpMul:
		return opMul(l, r)
	case OpDiv:
		return opDiv(l, r)
	case OpMod:
		return opMod(l, r)
	case OpPow:
		return opPow(l, r)
	case OpIn:
		if x.set != nil {
			return x.set.contains(l), nil
		}
		return in(l, r)
	case OpStartsWith, OpEndsWith, OpContains:
		ls, ok1 := l.(string)
		rs, ok2 := r.(string)
		if !ok1 || !ok2 {
			return nil, nil
		}
		switch x.Op {
		case OpStartsWith:
			return strings.HasPrefix(ls, rs), nil
		case OpEndsWith:
			return strings.HasSuffix(ls, rs), nil
		}
		return strings.Contains(ls, rs), nil
	case OpRegex:
		ls, ok1 := l.(string)
		rs, ok2 := r.(string)
		if !ok1 || !ok2 {
			return nil, nil
		}
		re := x.re
		if re == nil {
			var err error
			if re, err = compileRegex(rs); err != nil {
				return nil, err
			}
		}
		return re.MatchString(ls), nil
	}
	return nil, typeErr("unknown operator")
}

// in is Cypher's IN: true when some element equals x; otherwise null when
// some comparison was null (or x is null and the list is not empty), else
// false.
func in(x, list Value) (Value, error) {
	if list == nil {
		return nil, nil
	}
	l, ok := list.([]Value)
	if !ok {
		return nil, typeErr("IN expects a list on the right but got " + TypeName(list))
	}
	sawNull := false
	for _, e := range l {
		eq, isNull := Equal(x, e)
		if eq {
			return true, nil
		}
		if isNull {
			sawNull = true
		}
	}
	if sawNull {
		return nil, nil
	}
	return false, nil
}

// inSet is the precomputed form of `x IN [literal list]` for long lists of
// scalars (null, booleans, strings, numbers other than NaN): a lookup by
// canonical key instead of a scan, with the same result as in.
type inSet struct {
	keys    map[string]struct{}
	hasNull bool
}

// minInSet is the list length from which a literal IN list gets an inSet.
const minInSet = 8

func isSetScalar(v Value) bool {
	switch x := v.(type) {
	case nil, bool, int64, string:
		return true
	case float64:
		return !math.IsNaN(x)
	}
	return false
}

// newInSet returns the set for list, or nil when it does not qualify.
func newInSet(list []Value) *inSet {
	if len(list) < minInSet {
		return nil
	}
	s := &inSet{keys: make(map[string]struct{}, len(list))}
	for _, v := range list {
		if !isSetScalar(v) {
			return nil
		}
		if v == nil {
			s.hasNull = true
			continue
		}
		s.keys[string(AppendKey(nil, v))] = struct{}{}
	}
	return s
}

// contains is in(x, list) for the (never empty) list the set was built from.
func (s *inSet) contains(x Value) Value {
	if x != nil && isSetScalar(x) {
		var buf [64]byte
		if _, ok := s.keys[string(AppendKey(buf[:0], x))]; ok {
			return true
		}
	}
	// No element equals x; a null element (or a null x) makes it null.
	if s.hasNull || x == nil {
		return nil
	}
	return false
}

// regexCache keeps compiled patterns; it is cleared when full, so dynamic
// patterns cannot grow it without bound.
var regexCache struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

const regexCacheSize = 256

func compileRegex(pattern string) (*regexp.Regexp, error) {
	regexCache.Lock()
	re, ok := regexCache.m[pattern]
	regexCache.Unlock()
	if ok {
		return re, nil
	}
	re, err := compileRegexUncached(pattern)
	if err != nil {
		return nil, err
	}
	regexCache.Lock()
	if regexCache.m == nil || len(regexCache.m) >= regexCacheSize {
		regexCache.m = make(map[string]*regexp.Regexp, regexCacheSize)
	}
	regexCache.m[pattern] = re
	regexCache.Unlock()
	return re, nil
}

func (ev *evaluator) index(x *Index) (Value, error) {
	c, err := ev.eval(x.X)
	if err != nil {
		return nil, err
	}
	i, err := ev.eval(x.Index)
	if err != nil {
		return nil, err
	}
	if c == nil || i == nil {
		return nil, nil
	}
	switch col := c.(type) {
	case []Value:
		n, ok := i.(int64)
		if !ok {
			return nil, typeErr("list index must be an integer, not " + TypeName(i))
		}
		if n < 0 {
			n += int64(len(col))
		}
		if n < 0 || n >= int64(len(col)) {
			return nil, nil
		}
		return col[n], nil
	case map[string]Value, Element:
		k, ok := i.(string)
		if !ok {
			return nil, typeErr("map key must be a string, not " + TypeName(i))
		}
		return property(c, k)
	}
	return nil, typeErr("cannot index " + TypeName(c))
}

func (ev *evaluator) slice(x *Slice) (Value, error) {
	c, err := ev.eval(x.X)
	if err != nil {
		return nil, err
	}
	var from, to Value
	if x.From != nil {
		if from, err = ev.eval(x.From); err != nil {
			return nil, err
		}
		if from == nil {
			return nil, nil
		}
	}
	if x.To != nil {
		if to, err = ev.eval(x.To); err != nil {
			return nil, err
		}
		if to == nil {
			return nil, nil
		}
	}
	if c == nil {
		return nil, nil
	}
	list, ok := c.([]Value)
	if !ok {
		return nil, typeErr("cannot slice " + TypeName(c))
	}
	n := int64(len(list))
	lo, hi := int64(0), n
	if from != nil {
		f, ok := from.(int64)
		if !ok {
			return nil, typeErr("slice bound must be an integer, not " + TypeName(from))
		}
		lo = f
	}
	if to != nil {
		t, ok := to.(int64)
		if !ok {
			return nil, typeErr("slice bound must be an integer, not " + TypeName(to))
		}
		hi = t
	}
	lo, hi = clampIndex(lo, n), clampIndex(hi, n)
	if lo >= hi {
		return []Value{}, nil
	}
	return list[lo:hi:hi], nil
}

func clampIndex(i, n int64) int64 {
	if i < 0 {
		i += n
	}
	if i < 0 {
		return 0
	}
	if i > n {
		return n
	}
	return i
}

func (ev *evaluator) caseExpr(x *Case) (Value, error) {
	var subject Value
	if x.Subject != nil {
		var err error
		if subject, err = ev.eval(x.Subject); err != nil {
			return nil, err
		}
	}
	for i, w := range x.Whens {
		wv, err := ev.eval(w)
		if err != nil {
			return nil, err
		}
		var hit bool
		if x.Subject != nil {
			hit, _ = Equal(subject, wv)
		} else {
			switch b := wv.(type) {
			case bool:
				hit = b
			case nil:
			default:
				return nil, typeErr("CASE WHEN expects a boolean but got " + TypeName(wv))
			}
		}
		if hit {
			return ev.eval(x.Thens[i])
		}
	}
	if x.Else == nil {
		return nil, nil
	}
	return ev.eval(x.Else)
}

func (ev *evaluator) bindLocal(v *Variable, val Value) {
	for len(ev.locals) <= v.Index {
		ev.locals = append(ev.locals, nil)
	}
	ev.locals[v.Index] = val
}

func (ev *evaluator) listOf(e Expr, what string) ([]Value, bool, error) {
	v, err := ev.eval(e)
	if err != nil {
		return nil, false, err
	}
	if v == nil {
		return nil, true, nil
	}
	l, ok := v.([]Value)
	if !ok {
		return nil, false, typeErr(what + " expects a list but got " + TypeName(v))
	}
	return l, false, nil
}

func (ev *evaluator) comprehension(x *Comprehension) (Value, error) {
	list, isNull, err := ev.listOf(x.List, "list comprehension")
	if err != nil || isNull {
		return nil, err
	}
	out := make([]Value, 0, len(list))
	for _, item := range list {
		if err := ev.step(); err != nil {
			return nil, err
		}
		ev.bindLocal(x.Var, item)
		if x.Where != nil {
			w, err := ev.eval(x.Where)
			if err != nil {
				return nil, err
			}
			if b, ok := w.(bool); !ok || !b {
				if ok || w == nil {
					continue
				}
				return nil, typeErr("list comprehension WHERE expects a boolean but got " + TypeName(w))
			}
		}
		if x.Project == nil {
			out = append(out, item)
			continue
		}
		p, err := ev.eval(x.Project)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (ev *evaluator) quantifier(x *Quantifier) (Value, error) {
	list, isNull, err := ev.listOf(x.List, "quantifier")
	if err != nil || isNull {
		return nil, err
	}
	trues, nulls := 0, 0
	for _, item := range list {
		if err := ev.step(); err != nil {
			return nil, err
		}
		ev.bindLocal(x.Var, item)
		w, err := ev.eval(x.Where)
		if err != nil {
			return nil, err
		}
		switch b := w.(type) {
		case bool:
			if b {
				trues++
			} else if x.Kind == QuantAll {
				return false, nil
			}
		case nil:
			nulls++
		default:
			return nil, typeErr("quantifier WHERE expects a boolean but got " + TypeName(w))
		}
		if trues > 0 && (x.Kind == QuantAny || x.Kind == QuantNone) {
			return x.Kind == QuantAny, nil
		}
		if trues > 1 && x.Kind == QuantSingle {
			return false, nil
		}
	}
	if nulls > 0 {
		return nil, nil
	}
	switch x.Kind {
	case QuantAll:
		return true, nil
	case QuantAny:
		return false, nil
	case QuantNone:
		return true, nil
	}
	return trues == 1, nil
}

func (ev *evaluator) call(x *Call) (Value, error) {
	if x.AggIndex >= 0 {
		if x.AggIndex >= len(ev.env.Aggregates) {
			return nil, typeErr("aggregate " + itoa(x.AggIndex) + " (" + x.Name + ") is not bound")
		}
		return ev.env.Aggregates[x.AggIndex], nil
	}
	fd := x.fn
	if fd == nil {
		return nil, typeErr("function " + x.Name + " was not resolved (expression not compiled)")
	}
	switch fd.special {
	case specialCoalesce:
		for _, a := range x.Args {
			v, err := ev.eval(a)
			if err != nil {
				return nil, err
			}
			if v != nil {
				return v, nil
			}
		}
		return nil, nil
	case specialPreviousValue:
		return ev.previousValue(x)
	case specialChangeTime:
		v, err := ev.eval(x.Args[0])
		if err != nil || v == nil {
			return nil, err
		}
		el, ok := v.(Element)
		if !ok {
			return nil, typeErr("drasi.changeDateTime expects a node or relation but got " + TypeName(v))
		}
		if ev.env.Host == nil {
			return nil, nil
		}
		t, ok := ev.env.Host.ChangeTime(el)
		if !ok {
			return nil, nil
		}
		return t, nil
	}
	var a [3]Value
	for i, arg := range x.Args {
		v, err := ev.eval(arg)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	v, err := fd.impl(len(x.Args), a[0], a[1], a[2])
	if err != nil {
		return nil, err
	}
	return v, nil
}

// previousValue evaluates its first argument with every element read as
// its previous version; when some element has none, it yields the second
// argument (or null).
func (ev *evaluator) previousValue(x *Call) (Value, error) {
	saved := ev.prev
	ev.prev = true
	v, err := ev.eval(x.Args[0])
	ev.prev = saved
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, errNoPrevious) || saved {
		return nil, err
	}
	if len(x.Args) > 1 {
		return ev.eval(x.Args[1])
	}
	return nil, nil
}

func runeLen(s string) int64 { return int64(utf8.RuneCountInString(s)) }

// compileRegexUncached compiles a =~ pattern; Cypher's =~ matches the whole
// string.
func compileRegexUncached(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, argErr("=~: invalid regular expression " + quoteName(pattern) + ": " + err.Error())
	}
	return re, nil
}
