package cypher

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

type evalCase struct {
	src  string
	want Value
	err  error // sentinel the error must wrap; nil = success
}

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, c := range cases {
		got, err := evalSrc(t, c.src)
		if c.err != nil {
			if !isErr(err, c.err) {
				t.Errorf("%s: got (%v, %v), want error %v", c.src, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: unexpected error %v", c.src, err)
			continue
		}
		if !sameValue(got, c.want) {
			t.Errorf("%s = %#v (%s), want %#v (%s)", c.src, got, TypeName(got), c.want, TypeName(c.want))
		}
	}
}

func l(vs ...Value) []Value { return vs }

func TestEvalLogic(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"true AND true", true, nil},
		{"true AND false", false, nil},
		{"true AND null", nil, nil},
		{"false AND null", false, nil},
		{"null AND false", false, nil},
		{"null AND null", nil, nil},
		{"true OR null", true, nil},
		{"null OR true", true, nil},
		{"false OR null", nil, nil},
		{"false OR false", false, nil},
		{"true XOR false", true, nil},
		{"true XOR true", false, nil},
		{"true XOR null", nil, nil},
		{"NOT true", false, nil},
		{"NOT null", nil, nil},
		{"NOT NOT false", false, nil},
		{"1 AND true", nil, ErrType},
		{"NOT 'x'", nil, ErrType},
		{"false AND 1", false, nil}, // short-circuit, as Cypher engines do
		{"true XOR 1", nil, ErrType},
	})
}

func TestEvalComparison(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"1 = 1.0", true, nil},
		{"1 <> 1.0", false, nil},
		{"1 = '1'", false, nil},
		{"null = null", nil, nil},
		{"1 = null", nil, nil},
		{"null <> 1", nil, nil},
		{"[1, 2] = [1, 2.0]", true, nil},
		{"[1, null] = [1, null]", nil, nil},
		{"[1, null] = [2, null]", false, nil},
		{"[1, 2] = [1]", false, nil},
		{"{a: 1} = {a: 1.0}", true, nil},
		{"{a: 1} = {b: 1}", false, nil},
		{"{a: null} = {a: null}", nil, nil},
		{"1 < 2", true, nil},
		{"2 <= 2.0", true, nil},
		{"3 > 2.5", true, nil},
		{"'a' < 'b'", true, nil},
		{"'B' < 'a'", true, nil},
		{"false < true", true, nil},
		{"1 < 'a'", nil, nil},
		{"null < 1", nil, nil},
		{"[1, 2] < [1, 3]", true, nil},
		{"[1] < [1, 0]", true, nil},
		{"{a:1} < {a:2}", nil, nil},
		{"0.0/0.0 = 0.0/0.0", false, nil},
		{"0.0/0.0 < 1", false, nil},
		{"0.0/0.0 >= 1", false, nil},
		{"1 < 2 < 3", true, nil},
		{"1 < 3 < 2", false, nil},
		{"9007199254740993 = 9007199254740992.0", false, nil}, // exact int/float comparison
		{"9007199254740993 > 9007199254740992.0", true, nil},
		{"n = n", true, nil},
		{"n = m", false, nil},
		{"n = r", false, nil},
		{"date('2020-01-01') < date('2020-01-02')", true, nil},
		{"date('2020-01-01') < localdatetime('2020-01-02T00:00')", nil, nil},
		{"datetime('2020-01-01T01:00+01:00') = datetime('2020-01-01T00:00Z')", true, nil},
		{"duration('P1D') < duration('P2D')", nil, nil},
		{"duration('P1D') = duration('PT24H')", false, nil},
	})
}

func TestEvalArithmetic(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"1 + 2", int64(3), nil},
		{"1 + 2.5", 3.5, nil},
		{"2.5 - 1", 1.5, nil},
		{"7 / 2", int64(3), nil},
		{"-7 / 2", int64(-3), nil},
		{"7 / 2.0", 3.5, nil},
		{"7 % 3", int64(1), nil},
		{"-7 % 3", int64(-1), nil},
		{"7.5 % 2", 1.5, nil},
		{"2 ^ 3", 8.0, nil},
		{"2 ^ 3 ^ 2", 64.0, nil},
		{"-2 ^ 2", 4.0, nil},
		{"2 * 3 + 4", int64(10), nil},
		{"2 + 3 * 4", int64(14), nil},
		{"(2 + 3) * 4", int64(20), nil},
		{"1 / 0", nil, ErrDivisionByZero},
		{"1 % 0", nil, ErrDivisionByZero},
		{"1.0 / 0", math.Inf(1), nil},
		{"-1 / 0.0", math.Inf(-1), nil},
		{"0.0 / 0", math.NaN(), nil},
		{"9223372036854775807 + 1", nil, ErrOverflow},
		{"-9223372036854775808 - 1", nil, ErrOverflow},
		{"9223372036854775807 * 2", nil, ErrOverflow},
		{"-9223372036854775808 / -1", nil, ErrOverflow},
		{"-9223372036854775808 % -1", int64(0), nil},
		{"-(-9223372036854775808)", nil, ErrOverflow},
		{"-9223372036854775808", int64(math.MinInt64), nil},
		{"4611686018427387904 * -2", int64(math.MinInt64), nil},
		{"-n.qty", int64(-3), nil},
		{"+n.qty", int64(3), nil},
		{"+'a'", nil, ErrType},
		{"'a' + 'b'", "ab", nil},
		{"'a' + 1", "a1", nil},
		{"1.5 + 'a'", "1.5a", nil},
		{"'a' + {}", nil, ErrType},
		{"[1] + [2, 3]", l(int64(1), int64(2), int64(3)), nil},
		{"[1] + 2", l(int64(1), int64(2)), nil},
		{"0 + [1]", l(int64(0), int64(1)), nil},
		{"null + 1", nil, nil},
		{"1 - null", nil, nil},
		{"null * 'x'", nil, nil},
		{"'a' - 1", nil, ErrType},
		{"'a' * 2", nil, ErrType},
		{"{} / 2", nil, ErrType},
		{"true % 2", nil, ErrType},
		{"'2' ^ 2", nil, ErrType},
		{"-'x'", nil, ErrType},
		{"0x1F + 0o17", int64(46), nil},
		{"1_000 + 1e3", 2000.0, nil},
		{".5 + 1", 1.5, nil},
	})
}

func TestEvalErrorMessages(t *testing.T) {
	for src, want := range map[string]string{
		"'a' + {}":          "cannot add string and map",
		"1 - 'a'":           "cannot subtract integer and string",
		"1.5 * true":        "cannot multiply float and boolean",
		"1 / 0":             "integer division by zero",
		"toUpper(1)":        "toUpper expects a string but got integer",
		"n.qty[0]":          "cannot index integer",
		"1 AND 2":           "cannot apply AND to integer",
		"$missing":          "parameter $missing is not set",
		"date('2020-13-1')": `date: cannot parse "2020-13-1" as an ISO-8601 date`,
	} {
		_, err := evalSrc(t, src)
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
}

func TestEvalStringsListsPredicates(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"'hello' STARTS WITH 'he'", true, nil},
		{"'hello' ENDS WITH 'lo'", true, nil},
		{"'hello' CONTAINS 'ell'", true, nil},
		{"'hello' CONTAINS null", nil, nil},
		{"1 STARTS WITH 'a'", nil, nil},
		{"'abc' =~ 'a.c'", true, nil},
		{"'abcd' =~ 'a.c'", false, nil},
		{"'x' =~ (n.status + '(')", nil, ErrInvalidArgument},
		{"null =~ 'a'", nil, nil},
		{"2 IN [1, 2]", true, nil},
		{"2 IN [1.0, 2.0]", true, nil},
		{"3 IN [1, 2]", false, nil},
		{"3 IN [1, null]", nil, nil},
		{"1 IN [1, null]", true, nil},
		{"null IN [1]", nil, nil},
		{"null IN []", false, nil},
		{"1 IN null", nil, nil},
		{"1 IN 1", nil, ErrType},
		{"[1] IN [[1], [2]]", true, nil},
		{"n.none IS NULL", true, nil},
		{"n.missing IS NULL", true, nil},
		{"n.status IS NOT NULL", true, nil},
		{"null IS NOT NULL", false, nil},
		{"[1, 2, 3][0]", int64(1), nil},
		{"[1, 2, 3][-1]", int64(3), nil},
		{"[1, 2, 3][3]", nil, nil},
		{"[1, 2, 3][-4]", nil, nil},
		{"[1, 2, 3][null]", nil, nil},
		{"[1, 2, 3]['a']", nil, ErrType},
		{"[1, 2, 3][1..]", l(int64(2), int64(3)), nil},
		{"[1, 2, 3][..-1]", l(int64(1), int64(2)), nil},
		{"[1, 2, 3][1..2]", l(int64(2)), nil},
		{"[1, 2, 3][2..1]", l(), nil},
		{"[1, 2, 3][-10..10]", l(int64(1), int64(2), int64(3)), nil},
		{"[1, 2, 3][null..2]", nil, nil},
		{"{a: 1}['a']", int64(1), nil},
		{"{a: 1}.a", int64(1), nil},
		{"{a: 1}.b", nil, nil},
		{"{a: {b: [1, 2]}}.a.b[1]", int64(2), nil},
		{"n['status']", "ready", nil},
		{"n.status", "ready", nil},
		{"n.meta.k", "v", nil},
		{"r.since", int64(2020), nil},
		{"1.x", nil, ErrType},
		{"n:orders", true, nil},
		{"n:orders:Urgent", true, nil},
		{"n:orders&Urgent", true, nil},
		{"n:drivers|Urgent", true, nil},
		{"n:drivers|nope", false, nil},
		{"[x IN [n, m] WHERE x:drivers | x.name]", l("Ann"), nil},
		{"[x IN [n, m] WHERE (x:drivers|orders) | x.id]", l(int64(1), int64(7)), nil},
		{"n:drivers", false, nil},
		{"r:ASSIGNED_TO", true, nil},
		{"$nul:orders", nil, nil},
		{"$p", int64(5), nil},
		{"$missing", nil, ErrMissingParameter},
		{"[x IN [1, 2, 3] WHERE x > 1 | x * 10]", l(int64(20), int64(30)), nil},
		{"[x IN [1, 2, 3] | x + 1]", l(int64(2), int64(3), int64(4)), nil},
		{"[x IN [1, null, 3] WHERE x > 1]", l(int64(3)), nil},
		{"[x IN null | x]", nil, nil},
		{"[x IN 1 | x]", nil, ErrType},
		{"[x IN [1, 2] | [y IN [10, 20] | x + y]]", l(l(int64(11), int64(21)), l(int64(12), int64(22))), nil},
		{"[x IN n.tags | toUpper(x)]", l("A", "B"), nil},
		{"[x IN [1,2] WHERE 1]", nil, ErrType},
		{"all(x IN [1, 2] WHERE x > 0)", true, nil},
		{"all(x IN [1, null] WHERE x > 0)", nil, nil},
		{"all(x IN [0, null] WHERE x > 0)", false, nil},
		{"any(x IN [1, null] WHERE x > 0)", true, nil},
		{"any(x IN [0, null] WHERE x > 0)", nil, nil},
		{"any(x IN [] WHERE x > 0)", false, nil},
		{"none(x IN [0, -1] WHERE x > 0)", true, nil},
		{"none(x IN [0, 1] WHERE x > 0)", false, nil},
		{"single(x IN [0, 1] WHERE x > 0)", true, nil},
		{"single(x IN [1, 1] WHERE x > 0)", false, nil},
		{"single(x IN [1, null] WHERE x > 0)", nil, nil},
		{"CASE WHEN 1 > 2 THEN 'a' WHEN 2 > 1 THEN 'b' ELSE 'c' END", "b", nil},
		{"CASE WHEN null THEN 'a' END", nil, nil},
		{"CASE WHEN 1 THEN 'a' END", nil, ErrType},
		{"CASE n.status WHEN 'new' THEN 1 WHEN 'ready' THEN 2 END", int64(2), nil},
		{"CASE 1 WHEN 1.0 THEN 'eq' ELSE 'ne' END", "eq", nil},
		{"CASE null WHEN null THEN 'eq' ELSE 'ne' END", "ne", nil},
		{"{a: 1, b: [n.qty]}", map[string]Value{"a": int64(1), "b": l(int64(3))}, nil},
		{"[]", l(), nil},
		{"{}", map[string]Value{}, nil},
	})
}

func TestEvalFunctions(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"elementId(n)", "orders:1", nil},
		{"id(r)", "rel:1", nil},
		{"elementId(null)", nil, nil},
		{"elementId(1)", nil, ErrType},
		{"labels(n)", l("orders", "Urgent"), nil},
		{"labels(r)", nil, ErrType},
		{"type(r)", "ASSIGNED_TO", nil},
		{"type(n)", nil, ErrType},
		{"keys(m)", l("id", "name"), nil},
		{"keys({b: 1, a: 2})", l("a", "b"), nil},
		{"properties(m)", map[string]Value{"name": "Ann", "id": int64(7)}, nil},
		{"exists(n.status)", true, nil},
		{"exists(n.nope)", false, nil},
		{"coalesce(null, n.nope, 2, 3)", int64(2), nil},
		{"coalesce(null)", nil, nil},
		{"coalesce(1, 1 / 0)", int64(1), nil}, // lazy
		{"size('héllo')", int64(5), nil},
		{"size([1, 2])", int64(2), nil},
		{"size(null)", nil, nil},
		{"size(1)", nil, ErrType},
		{"isEmpty('')", true, nil},
		{"isEmpty([1])", false, nil},
		{"toString(1)", "1", nil},
		{"toString(1.0)", "1.0", nil},
		{"toString(0.1)", "0.1", nil},
		{"toString(1e20)", "1.0E20", nil},
		{"toString(1.5e-7)", "1.5E-7", nil},
		{"toString(true)", "true", nil},
		{"toString('x')", "x", nil},
		{"toString(date('2024-02-29'))", "2024-02-29", nil},
		{"toString([1])", nil, ErrType},
		{"toString(null)", nil, nil},
		{"toInteger('42')", int64(42), nil},
		{"toInteger(' 42 ')", int64(42), nil},
		{"toInteger('4.7')", int64(4), nil},
		{"toInteger('x')", nil, nil},
		{"toInteger(-4.7)", int64(-4), nil},
		{"toInteger(true)", int64(1), nil},
		{"toInteger(1e30)", nil, ErrOverflow},
		{"toInteger([1])", nil, ErrType},
		{"toFloat(1)", 1.0, nil},
		{"toFloat('2.5')", 2.5, nil},
		{"toFloat('x')", nil, nil},
		{"toFloat(true)", nil, ErrType},
		{"toBoolean('TRUE')", true, nil},
		{"toBoolean('no')", nil, nil},
		{"toBoolean(0)", false, nil},
		{"toBoolean(1.0)", nil, ErrType},
		{"toUpper('abc')", "ABC", nil},
		{"toLower('ÀB')", "àb", nil},
		{"trim('  a b  ')", "a b", nil},
		{"ltrim('  a ')", "a ", nil},
		{"rtrim('  a ')", "  a", nil},
		{"substring('hello', 1)", "ello", nil},
		{"substring('hello', 1, 3)", "ell", nil},
		{"substring('héllo', 1, 2)", "él", nil},
		{"substring('hello', 10)", "", nil},
		{"substring('hello', -1)", nil, ErrInvalidArgument},
		{"substring('hello', 1.5)", nil, ErrType},
		{"replace('a-b-c', '-', '+')", "a+b+c", nil},
		{"split('a,b,,c', ',')", l("a", "b", "", "c"), nil},
		{"split('a,b;c', [',', ';'])", l("a", "b", "c"), nil},
		{"left('hello', 2)", "he", nil},
		{"right('hello', 2)", "lo", nil},
		{"right('hello', 10)", "hello", nil},
		{"left('hello', -1)", nil, ErrInvalidArgument},
		{"left(null, 1)", nil, nil},
		{"reverse('abc')", "cba", nil},
		{"reverse([1, 2])", l(int64(2), int64(1)), nil},
		{"abs(-3)", int64(3), nil},
		{"abs(-3.5)", 3.5, nil},
		{"abs(-9223372036854775808)", nil, ErrOverflow},
		{"ceil(1.2)", 2.0, nil},
		{"floor(-1.2)", -2.0, nil},
		{"ceil(2)", 2.0, nil},
		{"round(2.5)", 3.0, nil},
		{"round(-2.5)", -2.0, nil},
		{"round(3.14159, 2)", 3.14, nil},
		{"round(2.675, 2)", 2.68, nil},
		{"round(-1.005, 2)", -1.01, nil},
		{"round(1234.5, -2)", 1200.0, nil},
		{"round(999.9, 0)", 1000.0, nil},
		{"sign(-2)", int64(-1), nil},
		{"sign(0.0)", int64(0), nil},
		{"sign(3.5)", int64(1), nil},
		{"sqrt(16)", 4.0, nil},
		{"sqrt(-1)", math.NaN(), nil},
		{"sqrt('x')", nil, ErrType},
		{"head([1, 2])", int64(1), nil},
		{"head([])", nil, nil},
		{"last([1, 2])", int64(2), nil},
		{"tail([1, 2, 3])", l(int64(2), int64(3)), nil},
		{"tail([])", l(), nil},
		{"head(1)", nil, ErrType},
		{"range(1, 3)", l(int64(1), int64(2), int64(3)), nil},
		{"range(0, 10, 5)", l(int64(0), int64(5), int64(10)), nil},
		{"range(3, 1, -1)", l(int64(3), int64(2), int64(1)), nil},
		{"range(3, 1)", l(), nil},
		{"range(1, 3, 0)", nil, ErrInvalidArgument},
		{"range(0, 100000000000)", nil, ErrInvalidArgument},
		{"range(-9223372036854775808, 9223372036854775807)", nil, ErrInvalidArgument},
		{"pi() > 3.14", true, nil},
		{"atan2(1, 1) > 0.78", true, nil},
		{"drasi.changeDateTime(n)", NewDateTime(mustTime("2024-05-01T10:00:00Z")), nil},
		{"drasi.changeDateTime(m)", nil, nil},
		{"drasi.changeDateTime(1)", nil, ErrType},
		{"drasi.previousValue(n.status)", "new", nil},
		{"drasi.previousValue(n.total + 1)", 11.0, nil},
		{"drasi.previousValue(m.name)", nil, nil},
		{"drasi.previousValue(m.name, 'none')", "none", nil},
		{"drasi.previousValue(n.status, 'x') + n.status", "newready", nil},
		{"DRASI.PREVIOUSVALUE(1 + 1)", int64(2), nil},
	})
}

func TestEvalTemporal(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"toString(datetime('2015-07-21T21:40:32.142+0100'))", "2015-07-21T21:40:32.142+01:00", nil},
		{"toString(datetime('2015-07-21T21:40Z'))", "2015-07-21T21:40Z", nil},
		{"toString(datetime('2015-07-21'))", "2015-07-21T00:00Z", nil},
		{"toString(localdatetime('2015-07-21T21:40:05'))", "2015-07-21T21:40:05", nil},
		{"toString(date('20150721'))", "2015-07-21", nil},
		{"toString(date({year: 2020, month: 2, day: 29}))", "2020-02-29", nil},
		{"date({year: 2021, month: 2, day: 29})", nil, ErrInvalidArgument},
		{"toString(datetime({year: 2020, month: 1, day: 2, hour: 3, timezone: '+02:00'}))", "2020-01-02T03:00+02:00", nil},
		{"toString(datetime({epochMillis: 1000}))", "1970-01-01T00:00:01Z", nil},
		{"datetime({epochSeconds: 60}).epochMillis", int64(60000), nil},
		{"toString(localdatetime({year: 2020, minute: 5}))", "2020-01-01T00:05", nil},
		{"date('2020-02-30')", nil, ErrInvalidArgument},
		{"datetime('nope')", nil, ErrInvalidArgument},
		{"datetime(1)", nil, ErrType},
		{"localdatetime('2020-01-01T00:00Z')", nil, ErrInvalidArgument},
		{"date('2020-03-04').year", int64(2020), nil},
		{"date('2020-03-04').month", int64(3), nil},
		{"date('2020-03-04').day", int64(4), nil},
		{"date('2020-03-04').dayOfWeek", int64(3), nil},
		{"date('2020-03-04').hour", nil, ErrType},
		{"datetime('2020-03-04T05:06:07.5+01:00').hour", int64(5), nil},
		{"datetime('2020-03-04T05:06:07.5+01:00').millisecond", int64(500), nil},
		{"datetime('2020-03-04T05:06:07+01:00').offset", "+01:00", nil},
		{"datetime('2020-03-04T05:06:07+01:00').epochSeconds", int64(1583294767), nil},
		{"toString(duration('P1Y2M3DT4H5M6.5S'))", "P1Y2M3DT4H5M6.5S", nil},
		{"toString(duration('P14M'))", "P1Y2M", nil},
		{"toString(duration('PT0S'))", "PT0S", nil},
		{"toString(duration('P1W'))", "P7D", nil},
		{"toString(duration('PT1.5H'))", "PT1H30M", nil},
		{"toString(duration('P0.5D'))", "PT12H", nil},
		{"toString(duration('PT-1.5S'))", "PT-1.5S", nil},
		{"toString(duration({days: 1, hours: 36}))", "P1DT36H", nil},
		{"toString(duration({minutes: 1.5}))", "PT1M30S", nil},
		{"toString(duration('P0001-02-03T04:05:06'))", "P1Y2M3DT4H5M6S", nil},
		{"duration('P1D').days", int64(1), nil},
		{"duration('PT90M').minutes", int64(90), nil},
		{"duration('X')", nil, ErrInvalidArgument},
		{"duration('P')", nil, ErrInvalidArgument},
		{"toString(date('2020-01-31') + duration('P1M'))", "2020-02-29", nil},
		{"toString(date('2020-01-31') + duration('PT47H'))", "2020-02-01", nil},
		{"toString(date('2020-03-01') - duration('P1D'))", "2020-02-29", nil},
		{"toString(localdatetime('2020-01-01T23:00') + duration('PT2H'))", "2020-01-02T01:00", nil},
		{"toString(datetime('2020-01-01T23:00+01:00') + duration('PT2H'))", "2020-01-02T01:00+01:00", nil},
		{"toString(duration('P1D') + datetime('2020-01-01T00:00Z'))", "2020-01-02T00:00Z", nil},
		{"toString(duration('P1D') + duration('PT1H'))", "P1DT1H", nil},
		{"toString(duration('P1D') - duration('PT1H'))", "P1DT-1H", nil},
		{"toString(duration('PT1H') * 2)", "PT2H", nil},
		{"toString(2 * duration('PT1H'))", "PT2H", nil},
		{"toString(duration('PT1H') / 2)", "PT30M", nil},
		{"toString(duration('P1D') * 1.5)", "P1DT12H", nil},
		{"duration('PT1H') / 0", nil, ErrDivisionByZero},
		{"toString(-duration('P1D'))", "P-1D", nil},
		{"date('2020-01-01') + 1", nil, ErrType},
		{"date('2020-01-01') - date('2019-01-01')", nil, ErrType},
		{"date(datetime('2020-01-01T23:30-05:00')) = date('2020-01-01')", true, nil},
		{"localdatetime(date('2020-01-01')) = localdatetime('2020-01-01T00:00')", true, nil},
		{"toString(datetime('2020-06-01T12:00[UTC]'))", "2020-06-01T12:00Z", nil},
		{"date()", nil, ErrUnsupported},
	})
}

func TestEvalEnvErrors(t *testing.T) {
	// A Row too short for the compiled slots is an error, not a panic.
	e, _, err := exprEnv(t, "n.id")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Eval(e, &Env{}); !isErr(err, ErrType) {
		t.Fatalf("short row: %v", err)
	}
	// Aggregate results missing from Env.
	p, err := Compile("MATCH (n) RETURN count(*) AS c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Eval(p.Parts[0].Items[0].Expr, nil); !isErr(err, ErrType) {
		t.Fatalf("missing aggregates: %v", err)
	}
	// Unresolved (not analyzed) calls are reported.
	q, err := Parse("RETURN toUpper('a') AS x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Eval(q.Parts[0].Projection.Items[0].Expr, nil); !isErr(err, ErrType) {
		t.Fatalf("unresolved call: %v", err)
	}
}

func TestEvalPredicate(t *testing.T) {
	for src, want := range map[string]bool{"1 < 2": true, "1 > 2": false, "null": false, "n.nope = 1": false} {
		e, env, err := exprEnv(t, src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EvalPredicate(e, env)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", src, got, err, want)
		}
	}
	e, env, _ := exprEnv(t, "1")
	if _, err := EvalPredicate(e, env); !isErr(err, ErrType) {
		t.Errorf("non-boolean WHERE: %v", err)
	}
	if ok, err := EvalPredicate(nil, nil); !ok || err != nil {
		t.Errorf("nil predicate: %v %v", ok, err)
	}
}

func TestPreviousValueWithoutHost(t *testing.T) {
	e, env, err := exprEnv(t, "drasi.previousValue(n.status, 'dflt')")
	if err != nil {
		t.Fatal(err)
	}
	env.Host = nil
	v, err := Eval(e, env)
	if err != nil || v != "dflt" {
		t.Fatalf("got %v, %v", v, err)
	}
}

func TestInSetMatchesScan(t *testing.T) {
	lists := [][]Value{
		{int64(1), int64(2), int64(3), 4.5, "a", "b", true, false},
		{int64(1), int64(2), int64(3), 4.5, "a", "b", true, nil},
		{nil, nil, nil, nil, nil, nil, nil, nil},
		{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.Copysign(0, -1)},
	}
	for _, list := range lists {
		set := newInSet(list)
		if set == nil {
			t.Fatalf("no set for %v", list)
		}
		for _, x := range append(sampleValues(), int64(3), 3.0, 4.5, "a", int64(0), 0.0) {
			want, _ := in(x, list)
			if got := set.contains(x); !sameValue(got, want) {
				t.Errorf("%#v IN %v: set %v, scan %v", x, list, got, want)
			}
		}
	}
	if newInSet([]Value{int64(1)}) != nil {
		t.Error("short lists are scanned")
	}
	if newInSet([]Value{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.NaN()}) != nil {
		t.Error("NaN element must disable the set")
	}
	if newInSet([]Value{l(), 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}) != nil {
		t.Error("list element must disable the set")
	}
	// Through the analyzer.
	runEvalCases(t, []evalCase{
		{"n.qty IN [1, 2, 3.0, 4, 5, 6, 7, 8]", true, nil},
		{"n.qty IN [10, 20, 30, 40, 50, 60, 70, 80]", false, nil},
		{"n.qty IN [10, 20, 30, 40, 50, 60, 70, null]", nil, nil},
		{"n.none IN [10, 20, 30, 40, 50, 60, 70, 80]", nil, nil},
		{"n.tags IN [10, 20, 30, 40, 50, 60, 70, 80]", false, nil},
	})
}

// TestConcurrentEval evaluates one compiled program from several goroutines
// (run with -race): evaluation shares the AST and the regex cache only.
func TestConcurrentEval(t *testing.T) {
	srcs := []string{
		"n.status =~ ('r' + '.*')", "n.status =~ $s", "[x IN n.tags WHERE x =~ '[ab]' | toUpper(x)]",
		"drasi.previousValue(n.total, 0) + n.total", "n.qty IN [1, 2, 3, 4, 5, 6, 7, 8]",
	}
	type prepared struct {
		e    Expr
		env  *Env
		want Value
	}
	var ps []prepared
	for _, s := range srcs {
		e, env, err := exprEnv(t, s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Eval(e, env)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, prepared{e, env, want})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				p := ps[i%len(ps)]
				// Each goroutine uses its own Env copy, as the engine would.
				env := *p.env
				got, err := Eval(p.e, &env)
				if err != nil || !sameValue(got, p.want) {
					select {
					case errs <- fmt.Sprintf("%s: %v %v", ExprString(p.e), got, err):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
