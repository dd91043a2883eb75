package engine

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/tributary/tributary/pkg/change"
)

// The benchmarks load 1,000,000 elements, report the heap they take per
// element (runtime.MemStats before and after, after GC), then measure
// changes per second: each change is a JSON envelope decoded with
// change.Decode and applied. BenchmarkBaseline does the same decode and
// store write without any query, so the ratios say what the query costs.

const benchElements = 1_000_000

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// item returns the JSON envelope of a small node (8 properties).
func itemEnvelope(op string, i int, r *rand.Rand) []byte {
	return fmt.Appendf(nil, `{"op":%q,"source":"pg","element":{"type":"node","id":"item:%d","labels":["Item"],"properties":{"id":%d,"name":"item %d","price":%d,"category":"c%d","qty":%d,"active":true,"weight":%d.5,"sku":"SKU-%08d"}},"ts_ms":%d}`,
		op, i, i, i, r.IntN(1000), r.IntN(100), r.IntN(50), r.IntN(20), i, 1700000000000+i)
}

type benchCase struct {
	query string
	joins []Join
	// load returns the envelope of the i-th initial element.
	load func(i int, r *rand.Rand) []byte
	// change returns the envelope of the i-th measured change.
	change func(i int, r *rand.Rand) []byte
}

var benchCases = map[string]benchCase{
	"filter": {
		query:  `MATCH (n:Item) WHERE n.price > 500 RETURN n.id AS id, n.name AS name, n.price AS price`,
		load:   func(i int, r *rand.Rand) []byte { return itemEnvelope("insert", i, r) },
		change: func(i int, r *rand.Rand) []byte { return itemEnvelope("update", r.IntN(benchElements), r) },
	},
	"aggregate": {
		query:  `MATCH (n:Item) RETURN n.category AS category, count(n) AS n, avg(n.price) AS avgPrice`,
		load:   func(i int, r *rand.Rand) []byte { return itemEnvelope("insert", i, r) },
		change: func(i int, r *rand.Rand) []byte { return itemEnvelope("update", r.IntN(benchElements), r) },
	},
	"join": {
		// 900,000 orders, 100,000 customers, joined on the customer id.
		query: `MATCH (o:Order)-[:BY]->(c:Customer) WHERE c.tier = 'gold' RETURN o.id AS orderId, o.amount AS amount, c.name AS customer`,
		joins: []Join{{ID: "BY", Keys: []JoinKey{{Label: "Order", Property: "customer_id"}, {Label: "Customer", Property: "id"}}}},
		load: func(i int, r *rand.Rand) []byte {
			if i < 100_000 {
				tier := "silver"
				if i%4 == 0 {
					tier = "gold"
				}
				return fmt.Appendf(nil, `{"op":"insert","source":"pg","element":{"type":"node","id":"customer:%d","labels":["Customer"],"properties":{"id":%d,"name":"cust %d","tier":%q}},"ts_ms":1}`, i, i, i, tier)
			}
			return fmt.Appendf(nil, `{"op":"insert","source":"pg","element":{"type":"node","id":"order:%d","labels":["Order"],"properties":{"id":%d,"customer_id":%d,"amount":%d,"status":"new"}},"ts_ms":1}`, i, i, r.IntN(100_000), r.IntN(500))
		},
		change: func(i int, r *rand.Rand) []byte {
			o := 100_000 + r.IntN(900_000)
			return fmt.Appendf(nil, `{"op":"update","source":"pg","element":{"type":"node","id":"order:%d","labels":["Order"],"properties":{"customer_id":%d,"amount":%d}},"ts_ms":2}`, o, r.IntN(100_000), r.IntN(500))
		},
	},
	"path3": {
		// 500,000 nodes in chains of 10 linked by 450,000+ NEXT relations
		// (about 1,000,000 elements); changes update nodes in the middle
		// of paths.
		query: `MATCH (a:P)-[:NEXT]->(b:P)-[:NEXT]->(c:P)-[:NEXT]->(d:P) WHERE a.v > 10 RETURN a.id AS a, d.id AS d, b.v + c.v AS mid`,
		load: func(i int, r *rand.Rand) []byte {
			if i%2 == 0 {
				n := i / 2
				return fmt.Appendf(nil, `{"op":"insert","source":"pg","element":{"type":"node","id":"p:%d","labels":["P"],"properties":{"id":%d,"v":%d}},"ts_ms":1}`, n, n, r.IntN(100))
			}
			n := i / 2
			if n%10 == 9 {
				n = r.IntN(benchElements / 2) // a few cross links
			}
			return fmt.Appendf(nil, `{"op":"insert","source":"pg","element":{"type":"relation","id":"next:%d","labels":["NEXT"],"from":"p:%d","to":"p:%d"},"ts_ms":1}`, i/2, n, (n+1)%(benchElements/2))
		},
		change: func(i int, r *rand.Rand) []byte {
			n := r.IntN(benchElements / 2)
			return fmt.Appendf(nil, `{"op":"update","source":"pg","element":{"type":"node","id":"p:%d","labels":["P"],"properties":{"v":%d}},"ts_ms":2}`, n, r.IntN(100))
		},
	},
}

// loaded caches one loaded query per case across the b.N rounds of a
// benchmark (loading takes seconds).
var loaded = map[string]*loadedQuery{}

type loadedQuery struct {
	q          *Query
	s          *store // baseline only
	bytesPerEl float64
	loadPerSec float64
	pool       []*change.Envelope
	decodeNs   float64 // mean change.Decode time of the pool's envelopes
}

// makePool builds 65,536 change envelopes and measures their decoding.
func (l *loadedQuery) makePool(b *testing.B, gen func(i int, r *rand.Rand) []byte, r *rand.Rand) {
	raw := make([][]byte, 1<<16)
	for i := range raw {
		raw[i] = gen(i, r)
	}
	start := time.Now()
	for _, j := range raw {
		env, err := change.Decode(j)
		if err != nil {
			b.Fatal(err)
		}
		l.pool = append(l.pool, env)
	}
	l.decodeNs = float64(time.Since(start).Nanoseconds()) / float64(len(raw))
}

func loadCase(b *testing.B, name string) *loadedQuery {
	if l := loaded[name]; l != nil {
		return l
	}
	// Keep one loaded case at a time: each holds a million elements.
	for k := range loaded {
		delete(loaded, k)
	}
	r := rand.New(rand.NewPCG(1, 2))
	l := &loadedQuery{}
	var apply func(env *change.Envelope) error
	var gen func(i int, r *rand.Rand) []byte
	if name == "baseline" {
		l.s = newStore()
		apply = func(env *change.Envelope) error { return l.s.apply(env, newWriteSet()) }
		gen = benchCases["filter"].change
	} else {
		c := benchCases[name]
		q, err := New(QuerySpec{ID: name, Query: c.query, Joins: c.joins})
		if err != nil {
			b.Fatal(err)
		}
		l.q = q
		apply = func(env *change.Envelope) error { _, err := q.Apply(env); return err }
		gen = c.change
	}
	load := benchCases["filter"].load
	if c, ok := benchCases[name]; ok {
		load = c.load
	}
	before := heapNow()
	start := time.Now()
	for i := 0; i < benchElements; i++ {
		env, err := change.Decode(load(i, r))
		if err != nil {
			b.Fatal(err)
		}
		if err := apply(env); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	after := heapNow()
	l.bytesPerEl = float64(after-before) / benchElements
	l.loadPerSec = benchElements / elapsed.Seconds()
	l.makePool(b, gen, r)
	loaded[name] = l
	return l
}

// baselineNs is the baseline's time per change, measured first in the same
// run (run the benchmarks together so that the ratio is meaningful).
var baselineNs float64

func bench(b *testing.B, name string) {
	l := loadCase(b, name)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		env := l.pool[i%len(l.pool)]
		var err error
		if l.q != nil {
			_, err = l.q.Apply(env)
		} else {
			err = l.s.apply(env, newWriteSet())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	ns := float64(elapsed.Nanoseconds()) / float64(b.N)
	if name == "baseline" {
		baselineNs = ns
	} else if baselineNs > 0 {
		b.ReportMetric(ns/baselineNs, "x-baseline")
	}
	b.ReportMetric(1e9/ns, "changes/s")
	b.ReportMetric(1e9/(ns+l.decodeNs), "decoded-changes/s")
	b.ReportMetric(l.bytesPerEl, "heapB/element")
	b.ReportMetric(l.loadPerSec, "loads/s")
}

// BenchmarkBaseline writes envelopes into a bare store: no query, no
// matching, no result. It must run first (it does, by name order is not
// guaranteed: use -bench 'Baseline|Filter|Aggregate|Join|Path3').
func BenchmarkBaseline(b *testing.B)  { bench(b, "baseline") }
func BenchmarkFilter(b *testing.B)    { bench(b, "filter") }
func BenchmarkAggregate(b *testing.B) { bench(b, "aggregate") }
func BenchmarkJoin(b *testing.B)      { bench(b, "join") }
func BenchmarkPath3(b *testing.B)     { bench(b, "path3") }
