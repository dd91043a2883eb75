package cypher

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // named zones ([Europe/Paris]) resolve the same on every machine
)

// Date is a calendar date without time or zone (Cypher DATE). The zero value
// is 1970-01-01. Values are comparable with ==.
type Date struct {
	days int64 // days since 1970-01-01
}

// LocalDateTime is a date and wall-clock time without zone (Cypher LOCAL
// DATETIME). The zero value is 1970-01-01T00:00. Comparable with ==.
type LocalDateTime struct {
	sec  int64 // wall-clock seconds since 1970-01-01T00:00, as if UTC
	nsec int32
}

// DateTime is an instant with a fixed UTC offset (Cypher ZONED DATETIME).
// Named time zones are resolved to their offset at that instant when parsed;
// the name itself is not kept. Two DateTimes are equal (and share a grouping
// key) when they denote the same instant, whatever their offsets.
type DateTime struct {
	sec    int64 // Unix seconds
	nsec   int32
	offset int32 // seconds east of UTC
}

// Duration is a Cypher DURATION: months, days, seconds and nanoseconds kept
// apart, as Cypher does (a month or a day has no fixed length). Nanos is
// normalized to [0, 1e9).
type Duration struct {
	Months, Days, Seconds int64
	Nanos                 int32
}

const (
	secondsPerDay = 86400
	nanosPerSec   = 1_000_000_000
	// avgSecondsPerMonth is the average month (365.2425/12 days), used only
	// to cascade fractional months into days and seconds.
	avgSecondsPerMonth = 2_629_746
)

// NewDate returns the date; month and day out of range are normalized the
// way time.Date does.
func NewDate(year int, month time.Month, day int) Date {
	return DateOf(time.Date(year, month, day, 0, 0, 0, 0, time.UTC))
}

// DateOf returns t's calendar date in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	u := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
	return Date{days: floorDiv(u, secondsPerDay)}
}

// Time returns midnight UTC of the date.
func (d Date) Time() time.Time { return time.Unix(d.days*secondsPerDay, 0).UTC() }

// EpochDays returns the number of days since 1970-01-01.
func (d Date) EpochDays() int64 { return d.days }

// String formats the date as ISO-8601 (2020-01-02; years outside 0..9999
// get a sign).
func (d Date) String() string { return formatDate(d.Time()) }

// NewLocalDateTime returns t's wall-clock date and time, dropping its zone.
func NewLocalDateTime(t time.Time) LocalDateTime {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	u := time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	return LocalDateTime{sec: u.Unix(), nsec: int32(t.Nanosecond())}
}

// Time returns the wall-clock date and time in UTC.
func (l LocalDateTime) Time() time.Time { return time.Unix(l.sec, int64(l.nsec)).UTC() }

// String formats like Cypher (java.time): 2020-01-02T03:04, with :SS and a
// fraction of 3, 6 or 9 digits only when set.
func (l LocalDateTime) String() string {
	t := l.Time()
	return formatDate(t) + "T" + formatClock(t)
}

// NewDateTime returns the instant t with t's UTC offset at that instant.
func NewDateTime(t time.Time) DateTime {
	_, off := t.Zone()
	return DateTime{sec: t.Unix(), nsec: int32(t.Nanosecond()), offset: int32(off)}
}

// Time returns the instant in a fixed zone with the value's offset.
func (d DateTime) Time() time.Time {
	t := time.Unix(d.sec, int64(d.nsec))
	if d.offset == 0 {
		return t.UTC()
	}
	return t.In(time.FixedZone("", int(d.offset)))
}

// Offset returns the UTC offset in seconds east of UTC.
func (d DateTime) Offset() int { return int(d.offset) }

// UnixNano returns the instant in nanoseconds since the Unix epoch (it
// saturates outside years 1678..2262).
func (d DateTime) UnixNano() int64 {
	if d.sec > math.MaxInt64/nanosPerSec-1 {
		return math.MaxInt64
	}
	if d.sec < math.MinInt64/nanosPerSec+1 {
		return math.MinInt64
	}
	return d.sec*nanosPerSec + int64(d.nsec)
}

// String formats like LocalDateTime.String followed by the offset (Z or
// +01:00).
func (d DateTime) String() string {
	t := d.Time()
	return formatDate(t) + "T" + formatClock(t) + formatOffset(int(d.offset))
}

func formatDate(t time.Time) string {
	y, m, d := t.Date()
	var b []byte
	if y < 0 || y > 9999 {
		if y < 0 {
			b = append(b, '-')
			y = -y
		} else {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(y), 10)
	} else {
		b = pad(b, y, 4)
	}
	b = append(b, '-')
	b = pad(b, int(m), 2)
	b = append(b, '-')
	b = pad(b, d, 2)
	return string(b)
}

// formatClock formats like java.time: HH:MM, then :SS when seconds or
// nanoseconds are set, then a fraction of 3, 6 or 9 digits.
func formatClock(t time.Time) string {
	h, m, s := t.Clock()
	ns := t.Nanosecond()
	b := make([]byte, 0, 18)
	b = pad(b, h, 2)
	b = append(b, ':')
	b = pad(b, m, 2)
	if s != 0 || ns != 0 {
		b = append(b, ':')
		b = pad(b, s, 2)
		if ns != 0 {
			b = append(b, '.')
			switch {
			case ns%1_000_000 == 0:
				b = pad(b, ns/1_000_000, 3)
			case ns%1000 == 0:
				b = pad(b, ns/1000, 6)
			default:
				b = pad(b, ns, 9)
			}
		}
	}
	return string(b)
}

func formatOffset(off int) string {
	if off == 0 {
		return "Z"
	}
	b := make([]byte, 0, 9)
	if off < 0 {
		b = append(b, '-')
		off = -off
	} else {
		b = append(b, '+')
	}
	b = pad(b, off/3600, 2)
	b = append(b, ':')
	b = pad(b, off/60%60, 2)
	if off%60 != 0 {
		b = append(b, ':')
		b = pad(b, off%60, 2)
	}
	return string(b)
}

func pad(b []byte, n, width int) []byte {
	s := strconv.Itoa(n)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// String formats as ISO-8601 the way Cypher does: P1Y2M3DT4H5M6.5S, months
// split into years and months, seconds into hours, minutes and seconds,
// PT0S for zero.
func (d Duration) String() string {
	var b strings.Builder
	b.WriteByte('P')
	years, months := d.Months/12, d.Months%12
	if years != 0 {
		b.WriteString(strconv.FormatInt(years, 10))
		b.WriteByte('Y')
	}
	if months != 0 {
		b.WriteString(strconv.FormatInt(months, 10))
		b.WriteByte('M')
	}
	if d.Days != 0 {
		b.WriteString(strconv.FormatInt(d.Days, 10))
		b.WriteByte('D')
	}
	secs, nanos := d.Seconds, int64(d.Nanos)
	neg := secs < 0
	if neg && nanos > 0 {
		secs++
		nanos = nanosPerSec - nanos
	}
	if secs != 0 || nanos != 0 {
		b.WriteByte('T')
		h, m, s := secs/3600, secs/60%60, secs%60
		if h != 0 {
			b.WriteString(strconv.FormatInt(h, 10))
			b.WriteByte('H')
		}
		if m != 0 {
			b.WriteString(strconv.FormatInt(m, 10))
			b.WriteByte('M')
		}
		if s != 0 || nanos != 0 {
			if neg && s == 0 {
				b.WriteByte('-')
			}
			b.WriteString(strconv.FormatInt(s, 10))
			if nanos != 0 {
				f := strconv.FormatInt(nanos+nanosPerSec, 10)[1:]
				b.WriteByte('.')
				b.WriteString(strings.TrimRight(f, "0"))
			}
			b.WriteByte('S')
		}
	} else if b.Len() == 1 {
		b.WriteString("T0S")
	}
	return b.String()
}

// normDuration builds a Duration from seconds and a nanosecond count of any
// sign, normalizing nanos into [0, 1e9).
func normDuration(months, days, secs, nanos int64) (Duration, error) {
	carry := floorDiv(nanos, nanosPerSec)
	nanos -= carry * nanosPerSec
	s, ok := addInt(secs, carry)
	if !ok {
		return Duration{}, overflowErr("duration")
	}
	return Duration{Months: months, Days: days, Seconds: s, Nanos: int32(nanos)}, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// ---- parsing ----

type isoScanner struct {
	s string
	i int
}

func (p *isoScanner) digits(min, max int) (int, bool) {
	start := p.i
	n := 0
	for p.i < len(p.s) && p.i-start < max && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int(p.s[p.i]-'0')
		p.i++
	}
	return n, p.i-start >= min
}

func (p *isoScanner) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *isoScanner) done() bool { return p.i == len(p.s) }

func badTemporal(kind, s string) error {
	return argErr(kind + ": cannot parse " + strconv.Quote(s) + " as an ISO-8601 " + kind)
}

// parseDatePart reads YYYY-MM-DD, YYYYMMDD, YYYY-MM or YYYY.
func (p *isoScanner) date() (y, m, d int, ok bool) {
	y, ok = p.digits(4, 4)
	if !ok {
		return
	}
	m, d = 1, 1
	if p.eat('-') {
		if m, ok = p.digits(2, 2); !ok {
			return
		}
		if p.eat('-') {
			if d, ok = p.digits(2, 2); !ok {
				return
			}
		}
	} else if p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if m, ok = p.digits(2, 2); !ok {
			return
		}
		if d, ok = p.digits(2, 2); !ok {
			return
		}
	}
	ok = m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, time.Month(m))
	return
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// clock reads HH[:MM[:SS[.fffffffff]]] or HH[MM[SS[.f]]].
func (p *isoScanner) clock() (h, m, s, ns int, ok bool) {
	if h, ok = p.digits(2, 2); !ok {
		return
	}
	colon := p.eat(':')
	if colon || (p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9') {
		if m, ok = p.digits(2, 2); !ok {
			return
		}
		if (colon && p.eat(':')) || (!colon && p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9') {
			if s, ok = p.digits(2, 2); !ok {
				return
			}
			if p.eat('.') || p.eat(',') {
				start := p.i
				var frac int
				if frac, ok = p.digits(1, 9); !ok {
					return
				}
				for k := p.i - start; k < 9; k++ {
					frac *= 10
				}
				ns = frac
			}
		}
	}
	ok = h < 24 && m < 60 && s < 60
	return
}

// zone reads Z, ±HH, ±HHMM, ±HH:MM, optionally followed by [Region/Name]
// (ignored when an offset was given), or a bare [Region/Name].
func (p *isoScanner) zone() (loc *time.Location, ok bool) {
	if p.done() {
		return time.UTC, true
	}
	switch p.s[p.i] {
	case 'Z', 'z':
		p.i++
		loc = time.UTC
	case '+', '-':
		neg := p.s[p.i] == '-'
		p.i++
		h, okh := p.digits(2, 2)
		if !okh {
			return nil, false
		}
		m := 0
		if p.eat(':') {
			if m, okh = p.digits(2, 2); !okh {
				return nil, false
			}
		} else if !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			if m, okh = p.digits(2, 2); !okh {
				return nil, false
			}
		}
		if h > 18 || m > 59 {
			return nil, false
		}
		off := h*3600 + m*60
		if neg {
			off = -off
		}
		loc = time.FixedZone("", off)
	case '[':
	default:
		return nil, false
	}
	if p.eat('[') {
		end := strings.IndexByte(p.s[p.i:], ']')
		if end < 0 {
			return nil, false
		}
		name := p.s[p.i : p.i+end]
		p.i += end + 1
		named, ok := loadZone(name)
		if !ok {
			return nil, false
		}
		if loc == nil {
			loc = named
		}
	}
	return loc, p.done()
}

// zoneCache keeps resolved named zones (and failures), bounded: it is
// cleared when full.
var zoneCache struct {
	sync.Mutex
	m map[string]*time.Location
}

// loadZone resolves an IANA zone name. "Local" and "" are rejected: they
// would make results depend on the machine.
func loadZone(name string) (*time.Location, bool) {
	if name == "" || name == "Local" {
		return nil, false
	}
	zoneCache.Lock()
	defer zoneCache.Unlock()
	if loc, ok := zoneCache.m[name]; ok {
		return loc, loc != nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = nil
	}
	if zoneCache.m == nil || len(zoneCache.m) >= 256 {
		zoneCache.m = make(map[string]*time.Location)
	}
	zoneCache.m[name] = loc
	return loc, loc != nil
}

// ParseDate parses an ISO-8601 date (YYYY-MM-DD, YYYYMMDD, YYYY-MM, YYYY).
func ParseDate(s string) (Date, error) {
	p := isoScanner{s: strings.TrimSpace(s)}
	y, m, d, ok := p.date()
	if !ok || !p.done() {
		return Date{}, badTemporal("date", s)
	}
	return NewDate(y, time.Month(m), d), nil
}

// ParseLocalDateTime parses YYYY-MM-DDTHH:MM[:SS[.f]] (an offset is an error).
func ParseLocalDateTime(s string) (LocalDateTime, error) {
	p := isoScanner{s: strings.TrimSpace(s)}
	y, mo, d, ok := p.date()
	if !ok {
		return LocalDateTime{}, badTemporal("localdatetime", s)
	}
	var h, mi, sec, ns int
	if p.eat('T') || p.eat('t') {
		if h, mi, sec, ns, ok = p.clock(); !ok {
			return LocalDateTime{}, badTemporal("localdatetime", s)
		}
	}
	if !p.done() {
		return LocalDateTime{}, badTemporal("localdatetime", s)
	}
	return NewLocalDateTime(time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)), nil
}

// ParseDateTime parses an ISO-8601 date and time with an optional offset
// (Z, ±HH:MM, ±HHMM, ±HH) and optional [Region/Name]; without either the
// time is UTC.
func ParseDateTime(s string) (DateTime, error) {
	p := isoScanner{s: strings.TrimSpace(s)}
	y, mo, d, ok := p.date()
	if !ok {
		return DateTime{}, badTemporal("datetime", s)
	}
	var h, mi, sec, ns int
	if p.eat('T') || p.eat('t') {
		if h, mi, sec, ns, ok = p.clock(); !ok {
			return DateTime{}, badTemporal("datetime", s)
		}
	}
	loc, ok := p.zone()
	if !ok {
		return DateTime{}, badTemporal("datetime", s)
	}
	return NewDateTime(time.Date(y, time.Month(mo), d, h, mi, sec, ns, loc)), nil
}

// ParseDuration parses an ISO-8601 duration: P[nY][nM][nW][nD][T[nH][nM][nS]],
// components may be negative and fractional (fractions cascade into the
// smaller units), or the alternative form PYYYY-MM-DDTHH:MM:SS.
func ParseDuration(s string) (Duration, error) {
	src := strings.TrimSpace(s)
	if len(src) < 2 || (src[0] != 'P' && src[0] != 'p') {
		return Duration{}, badTemporal("duration", s)
	}
	rest := src[1:]
	if len(rest) >= 4 && rest[0] >= '0' && rest[0] <= '9' && strings.ContainsRune(rest, '-') {
		// Alternative form PYYYY-MM-DDTHH:MM:SS.
		p := isoScanner{s: rest}
		y, _ := p.digits(4, 4)
		if !p.eat('-') {
			return Duration{}, badTemporal("duration", s)
		}
		mo, ok1 := p.digits(2, 2)
		if !p.eat('-') {
			return Duration{}, badTemporal("duration", s)
		}
		d, ok2 := p.digits(2, 2)
		var h, mi, sec, ns int
		ok3 := true
		if p.eat('T') {
			h, mi, sec, ns, ok3 = p.clock()
		}
		if !ok1 || !ok2 || !ok3 || !p.done() {
			return Duration{}, badTemporal("duration", s)
		}
		return normDuration(int64(y)*12+int64(mo), int64(d), int64(h)*3600+int64(mi)*60+int64(sec), int64(ns))
	}
	var acc durationAcc
	inTime := false
	seen := false
	lastUnit := -1 // units must appear once each, in order Y M W D H M S
	for len(rest) > 0 {
		if rest[0] == 'T' || rest[0] == 't' {
			if inTime || len(rest) == 1 {
				return Duration{}, badTemporal("duration", s)
			}
			inTime = true
			rest = rest[1:]
			continue
		}
		j := 0
		if j < len(rest) && (rest[j] == '-' || rest[j] == '+') {
			j++
		}
		for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.' || rest[j] == ',') {
			j++
		}
		if j == 0 || j >= len(rest) {
			return Duration{}, badTemporal("duration", s)
		}
		num, err := strconv.ParseFloat(strings.ReplaceAll(rest[:j], ",", "."), 64)
		if err != nil {
			return Duration{}, badTemporal("duration", s)
		}
		unit := rest[j] | 0x20 // lower case
		rest = rest[j+1:]
		var u string
		switch {
		case !inTime && unit == 'y':
			u = "years"
		case !inTime && unit == 'm':
			u = "months"
		case !inTime && unit == 'w':
			u = "weeks"
		case !inTime && unit == 'd':
			u = "days"
		case inTime && unit == 'h':
			u = "hours"
		case inTime && unit == 'm':
			u = "minutes"
		case inTime && unit == 's':
			u = "seconds"
		default:
			return Duration{}, badTemporal("duration", s)
		}
		order := durationUnitOrder[u]
		if order <= lastUnit {
			return Duration{}, badTemporal("duration", s)
		}
		lastUnit = order
		if err := acc.add(u, num); err != nil {
			return Duration{}, badTemporal("duration", s)
		}
		seen = true
	}
	if !seen {
		return Duration{}, badTemporal("duration", s)
	}
	return acc.result()
}

var durationUnitOrder = map[string]int{
	"years": 0, "months": 1, "weeks": 2, "days": 3, "hours": 4, "minutes": 5, "seconds": 6,
}

// durationAcc accumulates duration components, cascading fractions down as
// Neo4j does: fractional months into days (average month of 30.436875
// days), fractional days into seconds, fractional seconds into nanoseconds.
type durationAcc struct {
	months, days, secs float64
	nanos              float64
}

func (a *durationAcc) add(unit string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return argErr("duration: component " + unit + " is not finite")
	}
	switch unit {
	case "years":
		a.months += v * 12
	case "months":
		a.months += v
	case "weeks":
		a.days += v * 7
	case "days":
		a.days += v
	case "hours":
		a.secs += v * 3600
	case "minutes":
		a.secs += v * 60
	case "seconds":
		a.secs += v
	case "milliseconds":
		a.nanos += v * 1e6
	case "microseconds":
		a.nanos += v * 1e3
	case "nanoseconds":
		a.nanos += v
	default:
		return argErr("duration: unknown component " + strconv.Quote(unit))
	}
	return nil
}

func (a *durationAcc) result() (Duration, error) {
	months := math.Trunc(a.months)
	allDays := a.days + (a.months-months)*avgSecondsPerMonth/secondsPerDay
	days := math.Trunc(allDays)
	secs := a.secs + (allDays-days)*secondsPerDay
	wholeSecs := math.Trunc(secs)
	nanos := math.Round((secs-wholeSecs)*1e9 + a.nanos)
	const lim = 9.2e18
	if math.Abs(months) > lim || math.Abs(days) > lim || math.Abs(wholeSecs) > lim || math.Abs(nanos) > lim {
		return Duration{}, overflowErr("duration")
	}
	return normDuration(int64(months), int64(days), int64(wholeSecs), int64(nanos))
}

// ---- arithmetic ----

func addMonthsClamped(t time.Time, months int64) (time.Time, bool) {
	if months == 0 {
		return t, true
	}
	y, m, d := t.Date()
	total := int64(y)*12 + int64(m-1) + months
	if total/12 > 1_000_000_000 || total/12 < -1_000_000_000 {
		return t, false
	}
	ny, nm := int(floorDiv(total, 12)), time.Month(total-floorDiv(total, 12)*12+1)
	if dim := daysIn(ny, nm); d > dim {
		d = dim
	}
	h, mi, s := t.Clock()
	return time.Date(ny, nm, d, h, mi, s, t.Nanosecond(), t.Location()), true
}

// addDurationToTime adds months (clamping the day to the month's end), then
// days, then seconds and nanoseconds, on the wall clock of t's location.
func addDurationToTime(t time.Time, d Duration) (time.Time, bool) {
	t, ok := addMonthsClamped(t, d.Months)
	if !ok {
		return t, false
	}
	// Whole days of the seconds go through the calendar too: a
	// time.Duration cannot hold more than 292 years.
	days, ok := addInt(d.Days, d.Seconds/secondsPerDay)
	if !ok || days > 1<<40 || days < -(1<<40) {
		return t, false
	}
	t = t.AddDate(0, 0, int(days))
	return t.Add(time.Duration(d.Seconds%secondsPerDay)*time.Second + time.Duration(d.Nanos)), true
}

func addTemporal(v Value, d Duration, neg bool) (Value, error) {
	if neg {
		var err error
		if d, err = negDuration(d); err != nil {
			return nil, err
		}
	}
	switch x := v.(type) {
	case Date:
		days := d.Days + d.Seconds/secondsPerDay
		t, ok := addDurationToTime(x.Time(), Duration{Months: d.Months, Days: days})
		if !ok {
			return nil, overflowErr("date arithmetic")
		}
		return DateOf(t), nil
	case LocalDateTime:
		t, ok := addDurationToTime(x.Time(), d)
		if !ok {
			return nil, overflowErr("localdatetime arithmetic")
		}
		return NewLocalDateTime(t), nil
	case DateTime:
		t, ok := addDurationToTime(x.Time(), d)
		if !ok {
			return nil, overflowErr("datetime arithmetic")
		}
		return NewDateTime(t), nil
	}
	return nil, typeErr("cannot add duration to " + TypeName(v))
}

func negDuration(d Duration) (Duration, error) {
	if d.Months == math.MinInt64 || d.Days == math.MinInt64 || d.Seconds == math.MinInt64 {
		return Duration{}, overflowErr("duration negation")
	}
	return normDuration(-d.Months, -d.Days, -d.Seconds, -int64(d.Nanos))
}

func addDurations(a, b Duration) (Duration, error) {
	m, ok1 := addInt(a.Months, b.Months)
	d, ok2 := addInt(a.Days, b.Days)
	s, ok3 := addInt(a.Seconds, b.Seconds)
	if !ok1 || !ok2 || !ok3 {
		return Duration{}, overflowErr("duration addition")
	}
	return normDuration(m, d, s, int64(a.Nanos)+int64(b.Nanos))
}

func mulDuration(d Duration, f Value, divide bool) (Value, error) {
	switch n := f.(type) {
	case int64:
		if !divide {
			m, ok1 := mulInt(d.Months, n)
			dd, ok2 := mulInt(d.Days, n)
			s, ok3 := mulInt(d.Seconds, n)
			ns, ok4 := mulInt(int64(d.Nanos), n)
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return nil, overflowErr("duration multiplication")
			}
			return normDuration(m, dd, s, ns)
		}
		if n == 0 {
			return nil, divZeroErr("duration division")
		}
		return scaleDuration(d, 1/float64(n))
	case float64:
		if divide {
			return scaleDuration(d, 1/n)
		}
		return scaleDuration(d, n)
	}
	verb := "multiply"
	if divide {
		verb = "divide"
	}
	return nil, binTypeErr(verb, d, f)
}

func scaleDuration(d Duration, f float64) (Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, argErr("duration: cannot scale by a non-finite number")
	}
	var acc durationAcc
	acc.months = float64(d.Months) * f
	acc.days = float64(d.Days) * f
	acc.secs = float64(d.Seconds) * f
	acc.nanos = float64(d.Nanos) * f
	return acc.result()
}

// temporalField returns a component of a temporal value (d.year, dt.hour,
// dur.days, ...); ok is false for an unknown component.
func temporalField(v Value, key string) (Value, bool) {
	switch x := v.(type) {
	case Date:
		return timeField(x.Time(), key, false, false)
	case LocalDateTime:
		return timeField(x.Time(), key, true, false)
	case DateTime:
		if r, ok := timeField(x.Time(), key, true, true); ok {
			return r, true
		}
		switch key {
		case "epochSeconds":
			return x.sec, true
		case "epochMillis":
			return x.sec*1000 + int64(x.nsec)/1e6, true
		}
	case Duration:
		return durationField(x, key)
	}
	return nil, false
}

func timeField(t time.Time, key string, clock, zone bool) (Value, bool) {
	switch key {
	case "year":
		return int64(t.Year()), true
	case "quarter":
		return int64((t.Month()-1)/3 + 1), true
	case "month":
		return int64(t.Month()), true
	case "day":
		return int64(t.Day()), true
	case "week":
		_, w := t.ISOWeek()
		return int64(w), true
	case "weekYear":
		y, _ := t.ISOWeek()
		return int64(y), true
	case "dayOfWeek", "weekDay":
		wd := int64(t.Weekday())
		if wd == 0 {
			wd = 7
		}
		return wd, true
	case "ordinalDay":
		return int64(t.YearDay()), true
	}
	if clock {
		switch key {
		case "hour":
			return int64(t.Hour()), true
		case "minute":
			return int64(t.Minute()), true
		case "second":
			return int64(t.Second()), true
		case "millisecond":
			return int64(t.Nanosecond() / 1e6), true
		case "microsecond":
			return int64(t.Nanosecond() / 1e3), true
		case "nanosecond":
			return int64(t.Nanosecond()), true
		}
	}
	if zone {
		_, off := t.Zone()
		switch key {
		case "offset", "timezone":
			return formatOffset(off), true
		case "offsetSeconds":
			return int64(off), true
		case "offsetMinutes":
			return int64(off / 60), true
		}
	}
	return nil, false
}

func durationField(d Duration, key string) (Value, bool) {
	switch key {
	case "years":
		return d.Months / 12, true
	case "quarters":
		return d.Months / 3, true
	case "months":
		return d.Months, true
	case "weeks":
		return d.Days / 7, true
	case "days":
		return d.Days, true
	case "hours":
		return d.Seconds / 3600, true
	case "minutes":
		return d.Seconds / 60, true
	case "seconds":
		return d.Seconds, true
	case "milliseconds":
		return d.Seconds*1000 + int64(d.Nanos)/1e6, true
	case "microseconds":
		return d.Seconds*1e6 + int64(d.Nanos)/1e3, true
	case "nanoseconds":
		return d.Seconds*1e9 + int64(d.Nanos), true
	case "monthsOfYear":
		return d.Months % 12, true
	case "monthsOfQuarter":
		return d.Months % 3, true
	case "daysOfWeek":
		return d.Days % 7, true
	case "minutesOfHour":
		return d.Seconds / 60 % 60, true
	case "secondsOfMinute":
		return d.Seconds % 60, true
	case "nanosecondsOfSecond":
		return int64(d.Nanos), true
	}
	return nil, false
}
