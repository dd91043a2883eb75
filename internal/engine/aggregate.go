package engine

import (
	"fmt"
	"math"
	"math/big"
	"sort"
)

// aggKind is an aggregate function.
type aggKind uint8

const (
	aggCount aggKind = iota + 1
	aggCountStar
	aggSum
	aggAvg
	aggMin
	aggMax
	aggCollect
)

func (k aggKind) String() string {
	switch k {
	case aggCount:
		return "count"
	case aggCountStar:
		return "count(*)"
	case aggSum:
		return "sum"
	case aggAvg:
		return "avg"
	case aggMin:
		return "min"
	case aggMax:
		return "max"
	case aggCollect:
		return "collect"
	}
	return fmt.Sprintf("aggregate(%d)", uint8(k))
}

// accumulator is the incremental state of one aggregate in one group. add
// applies a value with weight +1 (a row joins the group) or -1 (it leaves);
// a retraction always names a value that was added before. result is a pure
// function of the multiset of values added and not retracted, so the order
// of changes never shows (sums are exact, min/max/collect ordered).
type accumulator interface {
	add(v any, weight int)
	result() any
}

func newAccumulator(k aggKind, distinct bool) accumulator {
	var a accumulator
	switch k {
	case aggCountStar:
		return &countAcc{star: true}
	case aggCount:
		if distinct {
			return &countDistinctAcc{m: map[string]int{}}
		}
		return &countAcc{}
	case aggSum:
		a = &sumAcc{}
	case aggAvg:
		a = &avgAcc{}
	case aggMin:
		a = &extremeAcc{max: false}
	case aggMax:
		a = &extremeAcc{max: true}
	case aggCollect:
		a = &collectAcc{}
	default:
		panic(fmt.Sprintf("engine: unknown aggregate %d", k))
	}
	if distinct {
		return &distinctAcc{inner: a, m: map[string]*distinctEntry{}}
	}
	return a
}

// countAcc counts rows (count(*)) or non-null values (count(x)).
type countAcc struct {
	star bool
	n    int64
}

func (c *countAcc) add(v any, w int) {
	if c.star || v != nil {
		c.n += int64(w)
	}
}
func (c *countAcc) result() any { return c.n }

// countDistinctAcc counts distinct non-null values by equality key.
type countDistinctAcc struct{ m map[string]int }

func (c *countDistinctAcc) add(v any, w int) {
	if v == nil {
		return
	}
	k := eqKey(v)
	c.m[k] += w
	if c.m[k] <= 0 {
		delete(c.m, k)
	}
}
func (c *countDistinctAcc) result() any { return int64(len(c.m)) }

// distinctAcc forwards a value to its inner accumulator when its equality
// class appears (0 -> 1) and retracts it when it disappears (1 -> 0).
type distinctAcc struct {
	inner accumulator
	m     map[string]*distinctEntry
}

type distinctEntry struct {
	n   int
	rep any
}

func (d *distinctAcc) add(v any, w int) {
	if v == nil {
		return
	}
	k := eqKey(v)
	e := d.m[k]
	if e == nil {
		e = &distinctEntry{rep: v}
		d.m[k] = e
	}
	before := e.n
	e.n += w
	if before > 0 && w > 0 {
		// The latest representation wins (an element's newer version).
		d.inner.add(e.rep, -1)
		d.inner.add(v, 1)
		e.rep = v
		return
	}
	switch {
	case before == 0 && e.n > 0:
		d.inner.add(e.rep, 1)
	case before > 0 && e.n <= 0:
		d.inner.add(e.rep, -1)
		delete(d.m, k)
	}
}
func (d *distinctAcc) result() any { return d.inner.result() }

// exactSum sums numbers exactly: integers in int64 (big.Int after an
// overflow), finite floats as a big.Rat, non-finite floats counted. The
// result is rounded once when read, so adding and retracting in any order
// gives the same bits.
type exactSum struct {
	ints    int64
	big     *big.Int // non-nil once the integer part left int64
	floats  *big.Rat
	nFloat  int // float contributions currently in the sum (any value)
	nNaN    int
	nPosInf int
	nNegInf int
	n       int // numeric contributions
}

func (s *exactSum) add(v any, w int) bool {
	switch x := v.(type) {
	case int64:
		s.n += w
		if s.big == nil {
			prod, ok := mulInt(x, int64(w))
			if ok {
				if sum, ok := addInt(s.ints, prod); ok {
					s.ints = sum
					return true
				}
			}
			s.big = big.NewInt(s.ints)
		}
		var t big.Int
		t.Mul(big.NewInt(x), big.NewInt(int64(w)))
		s.big.Add(s.big, &t)
		if s.big.IsInt64() {
			s.ints = s.big.Int64()
			s.big = nil
		}
		return true
	case float64:
		s.n += w
		s.nFloat += w
		switch {
		case math.IsNaN(x):
			s.nNaN += w
		case math.IsInf(x, 1):
			s.nPosInf += w
		case math.IsInf(x, -1):
			s.nNegInf += w
		default:
			if s.floats == nil {
				s.floats = new(big.Rat)
			}
			var t big.Rat
			t.SetFloat64(x)
			if w < 0 {
				t.Neg(&t)
			}
			s.floats.Add(s.floats, &t)
		}
		return true
	}
	return false
}

func mulInt(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return 0, false
	}
	return c, true
}

func addInt(a, b int64) (int64, bool) {
	c := a + b
	if (c > a) != (b > 0) {
		return 0, false
	}
	return c, true
}

// total returns the exact sum of the finite part as a big.Rat.
func (s *exactSum) total() *big.Rat {
	t := new(big.Rat)
	if s.big != nil {
		t.SetInt(s.big)
	} else {
		t.SetInt64(s.ints)
	}
	if s.floats != nil {
		t.Add(t, s.floats)
	}
	return t
}

// nonFinite returns the non-finite result, if any.
func (s *exactSum) nonFinite() (float64, bool) {
	switch {
	case s.nNaN > 0 || (s.nPosInf > 0 && s.nNegInf > 0):
		return math.NaN(), true
	case s.nPosInf > 0:
		return math.Inf(1), true
	case s.nNegInf > 0:
		return math.Inf(-1), true
	}
	return 0, false
}

// sumAcc is sum(x): 0 for no values, an integer while only integers are in
// it, a float once a float is.
type sumAcc struct{ s exactSum }

func (a *sumAcc) add(v any, w int) { a.s.add(v, w) }
func (a *sumAcc) result() any {
	if f, ok := a.s.nonFinite(); ok {
		return f
	}
	if a.s.nFloat == 0 {
		if a.s.big == nil {
			return a.s.ints
		}
		f, _ := new(big.Float).SetInt(a.s.big).Float64()
		return f
	}
	f, _ := a.s.total().Float64()
	return f
}

// avgAcc is avg(x): null for no values, otherwise the exact mean rounded
// once to a float.
type avgAcc struct{ s exactSum }

func (a *avgAcc) add(v any, w int) { a.s.add(v, w) }
func (a *avgAcc) result() any {
	if a.s.n <= 0 {
		return nil
	}
	if f, ok := a.s.nonFinite(); ok {
		return f
	}
	if a.s.nFloat == 0 && a.s.big == nil {
		if a.s.ints%int64(a.s.n) == 0 {
			return float64(a.s.ints / int64(a.s.n))
		}
	}
	q := a.s.total()
	q.Quo(q, new(big.Rat).SetInt64(int64(a.s.n)))
	f, _ := q.Float64()
	return f
}

// multiset is an ordered multiset of values (nulls excluded): distinct
// representations sorted by compareValues, each with its multiplicity.
type multiset struct {
	entries []msEntry
}

type msEntry struct {
	val any
	n   int
}

func (m *multiset) add(v any, w int) {
	i := sort.Search(len(m.entries), func(i int) bool { return orderValues(m.entries[i].val, v) >= 0 })
	if i < len(m.entries) && orderValues(m.entries[i].val, v) == 0 {
		m.entries[i].n += w
		if w > 0 {
			// The latest representation wins (an element's newer version).
			m.entries[i].val = v
		}
		if m.entries[i].n <= 0 {
			m.entries = append(m.entries[:i], m.entries[i+1:]...)
		}
		return
	}
	if w <= 0 {
		return // retraction of an absent value: cannot happen, ignore
	}
	m.entries = append(m.entries, msEntry{})
	copy(m.entries[i+1:], m.entries[i:])
	m.entries[i] = msEntry{val: v, n: w}
}

// extremeAcc is min(x) or max(x): the first or last value of the ordered
// multiset, so removing the current extreme moves to the next one.
type extremeAcc struct {
	max bool
	ms  multiset
}

func (a *extremeAcc) add(v any, w int) {
	if v != nil {
		a.ms.add(v, w)
	}
}
func (a *extremeAcc) result() any {
	if len(a.ms.entries) == 0 {
		return nil
	}
	if a.max {
		return a.ms.entries[len(a.ms.entries)-1].val
	}
	return a.ms.entries[0].val
}

// collectAcc is collect(x): the non-null values in canonical order (the
// order never depends on the history of changes).
type collectAcc struct{ ms multiset }

func (a *collectAcc) add(v any, w int) {
	if v != nil {
		a.ms.add(v, w)
	}
}
func (a *collectAcc) result() any {
	out := make([]any, 0, len(a.ms.entries))
	for _, e := range a.ms.entries {
		for i := 0; i < e.n; i++ {
			out = append(out, e.val)
		}
	}
	return out
}
