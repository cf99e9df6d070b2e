// wiredecode decodes runstream records of wire format v2 (metric_columns and hardware_columns) the way a
// consumer written in Go would, from docs/wire-format.md alone: MessagePack through vmihailenco/msgpack,
// the binary columns through encoding/binary. It shares no code with the Python reader, so that the tests
// can compare what it reads with what the worker stored.
//
// Input (stdin): {"records": ["<base64 of a Kafka record value>", ...]}
//
// Output (stdout): {"records": [{"type", "v", "producer_id", "seq", "rank", "run_id", "team", "project",
// "host", "user", "interval_ms", "points": [{"key", "device", "step", "ts_ms", "bits"}], "error"}]}, where
// "bits" is the value's IEEE-754 binary64 pattern as 16 hex digits, so that NaN payloads and the sign of
// zero survive the trip. A record that breaks the format gets "error" and no points.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/vmihailenco/msgpack/v5"
)

// record holds the fields of both v2 kinds; msgpack matches MessagePack map keys to the tags.
type record struct {
	Type       string   `msgpack:"type"`
	V          int      `msgpack:"v"`
	ProducerID string   `msgpack:"producer_id"`
	Seq        int64    `msgpack:"seq"`
	Rank       int64    `msgpack:"rank"`
	RunID      string   `msgpack:"run_id"`
	Team       string   `msgpack:"team"`
	Project    string   `msgpack:"project"`
	Host       string   `msgpack:"host"`
	User       string   `msgpack:"user"`
	IntervalMs int64    `msgpack:"interval_ms"`
	Keys       []string `msgpack:"keys"`
	KeyIDs     []byte   `msgpack:"key_ids"`
	Devices    []string `msgpack:"devices"`
	DeviceIDs  []byte   `msgpack:"device_ids"`
	Steps      []byte   `msgpack:"steps"`
	TsBaseMs   int64    `msgpack:"ts_base_ms"`
	TsOffsets  []byte   `msgpack:"ts_offsets_ms"`
	Values     []byte   `msgpack:"values"`
}

type point struct {
	Key    string `json:"key"`
	Device string `json:"device,omitempty"`
	Step   int64  `json:"step"`
	TsMs   int64  `json:"ts_ms"`
	Bits   string `json:"bits"`
}

type decoded struct {
	Type       string  `json:"type"`
	V          int     `json:"v"`
	ProducerID string  `json:"producer_id"`
	Seq        int64   `json:"seq"`
	Rank       int64   `json:"rank"`
	RunID      string  `json:"run_id"`
	Team       string  `json:"team"`
	Project    string  `json:"project"`
	Host       string  `json:"host,omitempty"`
	User       string  `json:"user,omitempty"`
	IntervalMs int64   `json:"interval_ms,omitempty"`
	Points     []point `json:"points"`
	Error      string  `json:"error,omitempty"`
}

const maxEpochMs = 10_413_791_999_999 // 2299-12-31T23:59:59.999Z

// items checks that column holds a whole number of size-byte items and returns how many.
func items(name string, column []byte, size int) (int, error) {
	if len(column)%size != 0 {
		return 0, fmt.Errorf("%s holds %d bytes, not a whole number of %d-byte items", name, len(column), size)
	}
	return len(column) / size, nil
}

func decode(value []byte) decoded {
	// The kind first: the fields of a v1 batch have other types (lists where v2 has bin).
	var header struct {
		Type string `msgpack:"type"`
		V    int    `msgpack:"v"`
	}
	if err := msgpack.Unmarshal(value, &header); err != nil {
		return decoded{Error: err.Error(), Points: []point{}}
	}
	if header.V != 2 || (header.Type != "metric_columns" && header.Type != "hardware_columns") {
		msg := fmt.Sprintf("not a wire format v2 batch: type %q, v %d", header.Type, header.V)
		return decoded{Type: header.Type, V: header.V, Error: msg, Points: []point{}}
	}
	var r record
	if err := msgpack.Unmarshal(value, &r); err != nil {
		return decoded{Error: err.Error(), Points: []point{}}
	}
	out := decoded{
		Type: r.Type, V: r.V, ProducerID: r.ProducerID, Seq: r.Seq, Rank: r.Rank, RunID: r.RunID,
		Team: r.Team, Project: r.Project, Host: r.Host, User: r.User, IntervalMs: r.IntervalMs, Points: []point{},
	}
	points, err := readPoints(&r)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Points = points
	return out
}

func readPoints(r *record) ([]point, error) {
	hardware := r.Type == "hardware_columns"
	n, err := items("values", r.Values, 8)
	if err != nil {
		return nil, err
	}
	columns := map[string]struct {
		data []byte
		size int
	}{"key_ids": {r.KeyIDs, 2}, "ts_offsets_ms": {r.TsOffsets, 4}}
	if hardware {
		columns["device_ids"] = struct {
			data []byte
			size int
		}{r.DeviceIDs, 2}
	} else {
		columns["steps"] = struct {
			data []byte
			size int
		}{r.Steps, 8}
	}
	for name, c := range columns {
		m, err := items(name, c.data, c.size)
		if err != nil {
			return nil, err
		}
		if m != n {
			return nil, fmt.Errorf("%s holds %d items, values %d", name, m, n)
		}
	}
	le := binary.LittleEndian
	points := make([]point, n)
	for i := range n {
		keyID := int(le.Uint16(r.KeyIDs[2*i:]))
		if keyID >= len(r.Keys) {
			return nil, fmt.Errorf("key id %d out of range (%d keys)", keyID, len(r.Keys))
		}
		ts := r.TsBaseMs + int64(le.Uint32(r.TsOffsets[4*i:]))
		if r.TsBaseMs < 0 || ts > maxEpochMs {
			return nil, fmt.Errorf("time %d out of range", ts)
		}
		value := math.Float64frombits(le.Uint64(r.Values[8*i:])) // the float64 a consumer computes with
		p := point{Key: r.Keys[keyID], TsMs: ts, Bits: fmt.Sprintf("%016x", math.Float64bits(value))}
		if hardware {
			deviceID := int(le.Uint16(r.DeviceIDs[2*i:]))
			if deviceID >= len(r.Devices) {
				return nil, fmt.Errorf("device id %d out of range (%d devices)", deviceID, len(r.Devices))
			}
			p.Device = r.Devices[deviceID]
		} else {
			p.Step = int64(le.Uint64(r.Steps[8*i:]))
			if p.Step < 0 {
				return nil, fmt.Errorf("step %d is negative", p.Step)
			}
		}
		points[i] = p
	}
	return points, nil
}

func main() {
	var in struct {
		Records []string `json:"records"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	out := struct {
		Records []decoded `json:"records"`
	}{Records: make([]decoded, 0, len(in.Records))}
	for _, text := range in.Records {
		value, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			out.Records = append(out.Records, decoded{Error: "bad base64: " + err.Error(), Points: []point{}})
			continue
		}
		out.Records = append(out.Records, decode(value))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "cannot encode:", err)
		os.Exit(1)
	}
}
