package cypher

import (
	"testing"
	"time"
)

func TestParseTemporalForms(t *testing.T) {
	for in, want := range map[string]string{
		"2020-01-02":   "2020-01-02",
		"20200102":     "2020-01-02",
		"2020-03":      "2020-03-01",
		"2020":         "2020-01-01",
		" 2020-01-02 ": "2020-01-02",
	} {
		d, err := ParseDate(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDate(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "2020-1-02", "2020-02-30", "2020-13-01", "x", "2020-01-02T00:00", "202001"} {
		if _, err := ParseDate(bad); !isErr(err, ErrInvalidArgument) {
			t.Errorf("ParseDate(%q): %v", bad, err)
		}
	}
	for in, want := range map[string]string{
		"2020-01-02T03:04:05.123456789": "2020-01-02T03:04:05.123456789",
		"2020-01-02T03:04:05.1234":      "2020-01-02T03:04:05.123400",
		"2020-01-02T030405":             "2020-01-02T03:04:05",
		"2020-01-02T03":                 "2020-01-02T03:00",
		"2020-01-02":                    "2020-01-02T00:00",
		"2020-01-02T23:59:59,5":         "2020-01-02T23:59:59.500",
	} {
		d, err := ParseLocalDateTime(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseLocalDateTime(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"2020-01-02T24:00", "2020-01-02T12:60", "2020-01-02T1", "2020-01-02T12:00+01:00", "2020-01-02T12:00:00.1234567890"} {
		if _, err := ParseLocalDateTime(bad); !isErr(err, ErrInvalidArgument) {
			t.Errorf("ParseLocalDateTime(%q): %v", bad, err)
		}
	}
	for in, want := range map[string]string{
		"2020-01-02T03:04:05Z":                 "2020-01-02T03:04:05Z",
		"2020-01-02T03:04:05z":                 "2020-01-02T03:04:05Z",
		"2020-01-02T03:04-05:30":               "2020-01-02T03:04-05:30",
		"2020-01-02T03:04+0530":                "2020-01-02T03:04+05:30",
		"2020-01-02T03:04+05":                  "2020-01-02T03:04+05:00",
		"2020-01-02T03:04":                     "2020-01-02T03:04Z",
		"2020-01-02T03:04+01:00[Europe/Paris]": "2020-01-02T03:04+01:00",
		"2020-07-01T12:00[Europe/Paris]":       "2020-07-01T12:00+02:00",
		"2020-01-01T12:00[Europe/Paris]":       "2020-01-01T12:00+01:00",
		"-0001-01-01T00:00Z":                   "",
	} {
		d, err := ParseDateTime(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseDateTime(%q) accepted", in)
			}
			continue
		}
		if err != nil || d.String() != want {
			t.Errorf("ParseDateTime(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"2020-01-02T03:04+19:00", "2020-01-02T03:04+01:0", "2020-01-02T03:04[Nowhere/Zone]", "2020-01-02T03:04+01:00[UTC", "2020-01-02T03:04X", "2020-01-02T03:04[Local]", "2020-01-02T03:04[]"} {
		if _, err := ParseDateTime(bad); !isErr(err, ErrInvalidArgument) {
			t.Errorf("ParseDateTime(%q): %v", bad, err)
		}
	}
	for _, bad := range []string{"", "P", "PT", "P1", "P1H", "PT1D", "P1DT", "PTT1H", "1D", "P1.5.5D", "P1Y2Y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestTemporalFormatting(t *testing.T) {
	if s := NewDate(-44, 3, 15).String(); s != "-44-03-15" {
		t.Errorf("BC date = %s", s)
	}
	if s := NewDate(12345, 1, 1).String(); s != "+12345-01-01" {
		t.Errorf("far date = %s", s)
	}
	dt := NewDateTime(time.Date(2020, 1, 1, 0, 0, 0, 1000, time.FixedZone("", -(3*3600+30*60+15))))
	if s := dt.String(); s != "2020-01-01T00:00:00.000001-03:30:15" {
		t.Errorf("odd offset = %s", s)
	}
	if dt.Offset() != -(3*3600 + 30*60 + 15) {
		t.Errorf("offset = %d", dt.Offset())
	}
	if NewDate(1970, 1, 2).EpochDays() != 1 || NewDate(1969, 12, 31).EpochDays() != -1 {
		t.Error("EpochDays")
	}
	if n := NewDateTime(time.Unix(1, 5)).UnixNano(); n != 1_000_000_005 {
		t.Errorf("UnixNano = %d", n)
	}
	for d, want := range map[Duration]string{
		{}:                        "PT0S",
		{Months: -14}:             "P-1Y-2M",
		{Seconds: -3661}:          "PT-1H-1M-1S",
		{Seconds: -1, Nanos: 5e8}: "PT-0.5S",
		{Days: 3, Nanos: 1}:       "P3DT0.000000001S",
		{Seconds: 59, Nanos: 1e8}: "PT59.1S",
	} {
		if s := d.String(); s != want {
			t.Errorf("%#v.String() = %s, want %s", d, s, want)
		}
	}
}

func TestTemporalComponents(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"date('2020-12-31').quarter", int64(4), nil},
		{"date('2021-01-01').week", int64(53), nil},
		{"date('2021-01-01').weekYear", int64(2020), nil},
		{"date('2021-01-03').dayOfWeek", int64(7), nil},
		{"date('2020-12-31').ordinalDay", int64(366), nil},
		{"localdatetime('2020-01-02T03:04:05.006007008').microsecond", int64(6007), nil},
		{"localdatetime('2020-01-02T03:04:05.006007008').nanosecond", int64(6007008), nil},
		{"localdatetime('2020-01-02T03:04:05').minute", int64(4), nil},
		{"localdatetime('2020-01-02T03:04:05').second", int64(5), nil},
		{"localdatetime('2020-01-02T03:04:05').offset", nil, ErrType},
		{"datetime('2020-01-02T03:04:05-02:00').offsetSeconds", int64(-7200), nil},
		{"datetime('2020-01-02T03:04:05-02:00').offsetMinutes", int64(-120), nil},
		{"datetime('2020-01-02T03:04:05-02:00').timezone", "-02:00", nil},
		{"duration('P1Y5M').years", int64(1), nil},
		{"duration('P1Y5M').quarters", int64(5), nil},
		{"duration('P1Y5M').monthsOfYear", int64(5), nil},
		{"duration('P1Y5M').monthsOfQuarter", int64(2), nil},
		{"duration('P10D').weeks", int64(1), nil},
		{"duration('P10D').daysOfWeek", int64(3), nil},
		{"duration('PT3H5M7.5S').hours", int64(3), nil},
		{"duration('PT3H5M7.5S').minutesOfHour", int64(5), nil},
		{"duration('PT3H5M7.5S').secondsOfMinute", int64(7), nil},
		{"duration('PT3H5M7.5S').milliseconds", int64(11107500), nil},
		{"duration('PT1.5S').microseconds", int64(1500000), nil},
		{"duration('PT1.5S').nanoseconds", int64(1500000000), nil},
		{"duration('PT1.5S').nanosecondsOfSecond", int64(500000000), nil},
		{"duration('PT1S').bogus", nil, ErrType},
		{"toString(duration({years: 1, months: 2, weeks: 1, days: 1, hours: 1, minutes: 1, seconds: 1, milliseconds: 1, microseconds: 1, nanoseconds: 1}))", "P1Y2M8DT1H1M1.001001001S", nil},
		{"toString(duration({months: 0.5}))", "P15DT5H14M33S", nil},
		{"duration({bogus: 1})", nil, ErrInvalidArgument},
		{"duration({days: 'x'})", nil, ErrType},
		{"duration({days: 1.5, bogus: 1.0})", nil, ErrInvalidArgument},
		{"duration({days: 9223372036854775807, weeks: 1})", nil, ErrOverflow},
		{"toString(duration(duration('P1D')))", "P1D", nil},
		{"duration(1)", nil, ErrType},
		{"duration(null)", nil, nil},
		{"date(null)", nil, nil},
		{"toString(date(localdatetime('2020-05-06T07:08')))", "2020-05-06", nil},
		{"toString(date(date('2020-05-06')))", "2020-05-06", nil},
		{"date(1)", nil, ErrType},
		{"date({year: 2020, hour: 1})", nil, ErrInvalidArgument},
		{"date({month: 1})", nil, ErrInvalidArgument},
		{"date({year: 'x'})", nil, ErrType},
		{"toString(localdatetime(localdatetime('2020-05-06T07:08')))", "2020-05-06T07:08", nil},
		{"toString(localdatetime(datetime('2020-05-06T07:08+02:00')))", "2020-05-06T07:08", nil},
		{"localdatetime(1)", nil, ErrType},
		{"localdatetime({year: 2020, timezone: 'Z'})", nil, ErrInvalidArgument},
		{"toString(datetime(datetime('2020-05-06T07:08+02:00')))", "2020-05-06T07:08+02:00", nil},
		{"toString(datetime(date('2020-05-06')))", "2020-05-06T00:00Z", nil},
		{"toString(datetime(localdatetime('2020-05-06T07:08')))", "2020-05-06T07:08Z", nil},
		{"toString(datetime({year: 2020, millisecond: 5, microsecond: 6, nanosecond: 7}))", "2020-01-01T00:00:00.005006007Z", nil},
		{"toString(datetime({year: 2020, nanosecond: 123456789}))", "2020-01-01T00:00:00.123456789Z", nil},
		{"datetime({year: 2020, millisecond: 1000})", nil, ErrInvalidArgument},
		{"datetime({year: 2020, timezone: 'bogus'})", nil, ErrInvalidArgument},
		{"datetime({year: 2020, timezone: 1})", nil, ErrType},
		{"toString(datetime({epochMillis: -1}))", "1969-12-31T23:59:59.999Z", nil},
		{"toString(datetime({epochSeconds: 1, nanosecond: 5}))", "1970-01-01T00:00:01.000000005Z", nil},
		{"datetime({epochSeconds: 1, year: 2020})", nil, ErrInvalidArgument},
		{"datetime({epochSeconds: 'x'})", nil, ErrType},
		{"datetime({epochSeconds: 1, nanosecond: 'x'})", nil, ErrType},
		{"toString(localdatetime('2020-01-31T10:00') + duration('P1M1DT1H'))", "2020-03-01T11:00", nil},
		{"toString(localdatetime('2020-03-31T10:00') - duration('P1M'))", "2020-02-29T10:00", nil},
		{"toString(date('2020-01-01') + duration('P100000D'))", "2293-10-16", nil},
		{"date('2020-01-01') + duration({months: 9223372036854775807})", nil, ErrOverflow},
		{"localdatetime('2020-01-01T00:00') + duration({days: 9223372036854775807})", nil, ErrOverflow},
		{"-duration({months: -9223372036854775807 - 1})", nil, ErrOverflow},
		{"duration({days: 9223372036854775807}) + duration('P1D')", nil, ErrOverflow},
		{"duration({days: 9223372036854775807}) * 2", nil, ErrOverflow},
		{"duration('P1D') * (0.0 / 0.0)", nil, ErrInvalidArgument},
		{"toString(duration('P1D') / 2.0)", "PT12H", nil},
		{"duration('P1D') * 'x'", nil, ErrType},
		{"duration('P1D') / 'x'", nil, ErrType},
		{"duration('P1D') + 1", nil, ErrType},
		{"duration('P1D') - 1", nil, ErrType},
		{"toString(+duration('P1D'))", "P1D", nil},
		{"toString(localdatetime('2000-01-01T00:00') + duration({seconds: 86400 * 365 * 1000 + 1}))", "2999-05-03T00:00:01", nil},
		{"toString(datetime('2000-01-01T00:00Z') - duration({hours: 24 * 365 * 500}))", "1500-05-02T00:00Z", nil},
	})
}

func TestWalk(t *testing.T) {
	p, err := Compile(`MATCH (n) RETURN CASE n.a WHEN 1 THEN [x IN n.l WHERE x > n.b | x[0]] ELSE {k: n.c[1..n.d]} END AS v,
		all(y IN n.e WHERE y IS NULL) OR n:X OR NOT coalesce(n.f, -n.g) AS w`)
	if err != nil {
		t.Fatal(err)
	}
	var props []string
	for _, it := range p.Parts[0].Items {
		Walk(it.Expr, func(e Expr) bool {
			if pr, ok := e.(*Property); ok {
				props = append(props, pr.Key)
			}
			return true
		})
	}
	if got := len(props); got != 8 {
		t.Errorf("properties seen: %v", props)
	}
	// Returning false prunes.
	count := 0
	Walk(p.Parts[0].Items[0].Expr, func(Expr) bool { count++; return false })
	if count != 1 {
		t.Errorf("pruned walk visited %d", count)
	}
}

func TestDurationBetween(t *testing.T) {
	runEvalCases(t, []evalCase{
		{"toString(duration.between(date('2020-01-15'), date('2021-03-20')))", "P1Y2M5D", nil},
		{"toString(duration.between(date('2021-03-20'), date('2020-01-15')))", "P-1Y-2M-5D", nil},
		{"toString(duration.between(date('2020-01-31'), date('2020-02-29')))", "P29D", nil},
		{"toString(duration.between(localdatetime('2020-01-01T10:00'), localdatetime('2020-01-02T09:30:00.5')))", "PT23H30M0.5S", nil},
		{"toString(duration.between(datetime('2020-01-01T00:00+01:00'), datetime('2020-01-01T00:00Z')))", "PT1H", nil},
		{"toString(duration.inDays(date('2020-01-01'), date('2020-03-01')))", "P60D", nil},
		{"toString(duration.inMonths(date('2020-01-31'), date('2020-03-30')))", "P1M", nil},
		{"toString(duration.inSeconds(datetime('2020-01-01T00:00Z'), datetime('2020-01-02T00:00:01Z')))", "PT24H1S", nil},
		{"toString(duration.inSeconds(date('2020-01-02'), date('2020-01-01')))", "PT-24H", nil},
		{"duration.between(date('2020-01-01'), datetime('2020-01-01T00:00Z'))", nil, ErrType},
		{"duration.between(null, date('2020-01-01'))", nil, nil},
		{"toString(duration.inDays(date('1000-01-01'), date('3000-01-01')))", "P730485D", nil},
	})
}
