package journal

import "encoding/json"

// ParseFields decodes one line of journalctl -o json (or of the fallback
// file) into field → value. journalctl prints a value as a string, as an
// array of byte values when it is not printable UTF-8, as an array of those
// when the field repeats (the first is kept), and as null when it left it
// out.
func ParseFields(line []byte) (map[string]string, bool) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(line, &raw) != nil {
		return nil, false
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if s, ok := fieldValue(v); ok {
			out[k] = s
		}
	}
	return out, true
}

func fieldValue(v json.RawMessage) (string, bool) {
	if len(v) == 0 || string(v) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, true
	}
	var raw []byte // an array of numbers decodes element by element
	if v[0] == '[' && json.Unmarshal(v, &raw) == nil {
		return string(raw), true
	}
	var many []json.RawMessage
	if json.Unmarshal(v, &many) == nil && len(many) > 0 {
		return fieldValue(many[0])
	}
	return "", false
}
