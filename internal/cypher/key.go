package cypher

import (
	"encoding/binary"
	"math"
	"slices"
)

// Tags of the canonical key encoding.
const (
	keyNull     = 0x00
	keyFalse    = 0x01
	keyTrue     = 0x02
	keyInt      = 0x03 // integer-valued numbers, int64 or float64
	keyFloat    = 0x04 // other finite floats and infinities
	keyNaN      = 0x05
	keyString   = 0x06
	keyList     = 0x07
	keyMap      = 0x08
	keyDate     = 0x09
	keyLocalDT  = 0x0a
	keyDateTime = 0x0b
	keyDuration = 0x0c
	keyNode     = 0x0d
	keyRelation = 0x0e
	keyInvalid  = 0xff
)

// AppendKey appends v's canonical key to dst and returns the extended slice.
// The encoding is exact bytes, never a hash: type-tagged, length-prefixed
// (so the concatenation of several keys is itself unambiguous and can key a
// tuple), and canonical:
//
//   - a float64 with an integer value in int64 range encodes exactly like
//     that int64 (1 and 1.0 share a key); -0.0 encodes like 0;
//   - every NaN has the same encoding;
//   - map keys are sorted, so insertion order never matters;
//   - a DateTime encodes its instant only (same instant, same key);
//   - an element encodes its kind and ElementID.
//
// Two values have equal keys exactly when Compare returns 0. The byte order
// of keys is not the order of Compare.
func AppendKey(dst []byte, v Value) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, keyNull)
	case bool:
		if x {
			return append(dst, keyTrue)
		}
		return append(dst, keyFalse)
	case int64:
		return appendIntKey(dst, x)
	case float64:
		switch {
		case math.IsNaN(x):
			return append(dst, keyNaN)
		case x >= -twoTo63 && x < twoTo63 && x == math.Trunc(x):
			return appendIntKey(dst, int64(x))
		}
		dst = append(dst, keyFloat)
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(x))
	case string:
		dst = append(dst, keyString)
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		return append(dst, x...)
	case []Value:
		dst = append(dst, keyList)
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		for _, e := range x {
			dst = AppendKey(dst, e)
		}
		return dst
	case map[string]Value:
		dst = append(dst, keyMap)
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			dst = AppendKey(dst, x[k])
		}
		return dst
	case Date:
		dst = append(dst, keyDate)
		return binary.BigEndian.AppendUint64(dst, uint64(x.days))
	case LocalDateTime:
		dst = append(dst, keyLocalDT)
		dst = binary.BigEndian.AppendUint64(dst, uint64(x.sec))
		return binary.BigEndian.AppendUint32(dst, uint32(x.nsec))
	case DateTime:
		dst = append(dst, keyDateTime)
		dst = binary.BigEndian.AppendUint64(dst, uint64(x.sec))
		return binary.BigEndian.AppendUint32(dst, uint32(x.nsec))
	case Duration:
		dst = append(dst, keyDuration)
		dst = binary.BigEndian.AppendUint64(dst, uint64(x.Months))
		dst = binary.BigEndian.AppendUint64(dst, uint64(x.Days))
		dst = binary.BigEndian.AppendUint64(dst, uint64(x.Seconds))
		return binary.BigEndian.AppendUint32(dst, uint32(x.Nanos))
	case Element:
		tag := byte(keyNode)
		if x.IsRelation() {
			tag = keyRelation
		}
		id := x.ElementID()
		dst = append(dst, tag)
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		return append(dst, id...)
	}
	return append(dst, keyInvalid)
}

func appendIntKey(dst []byte, i int64) []byte {
	dst = append(dst, keyInt)
	return binary.BigEndian.AppendUint64(dst, uint64(i)^(1<<63))
}
