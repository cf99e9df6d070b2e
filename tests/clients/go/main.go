// chclient runs SQL through clickhouse-go v2 configured as Grafana's ClickHouse plugin configures it
// (pkg/plugin/driver.go: HTTP protocol, gzip compression, user and password, dial and read timeouts,
// the plugin's custom settings, database/sql through clickhouse.OpenDB), and prints what the driver
// decoded as JSON, so that tests can check the rows.
//
// Input (stdin): {"addr": "127.0.0.1:8123", "user": "...", "password": "...", "database": "...",
//
//	"settings": {"limit": 1000}, "queries": [{"name": "...", "sql": "..."}]}
//
// Output (stdout): {"ping": "", "results": [{"name", "columns", "types", "rows", "error"}]}
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type query struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

type request struct {
	Addr     string         `json:"addr"`
	User     string         `json:"user"`
	Password string         `json:"password"`
	Database string         `json:"database"`
	Settings map[string]any `json:"settings"`
	Queries  []query        `json:"queries"`
}

type result struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error,omitempty"`
}

type response struct {
	Ping    string   `json:"ping"`
	Results []result `json:"results"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	settings := clickhouse.Settings{}
	for k, v := range req.Settings {
		settings[k] = v
	}
	db := clickhouse.OpenDB(&clickhouse.Options{
		Addr:        []string{req.Addr},
		Auth:        clickhouse.Auth{Database: req.Database, Username: req.User, Password: req.Password},
		Protocol:    clickhouse.HTTP,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionGZIP},
		DialTimeout: 10 * time.Second,
		ReadTimeout: 60 * time.Second,
		Settings:    settings,
	})
	defer db.Close()
	ctx := context.Background()
	out := response{Results: []result{}}
	if err := db.PingContext(ctx); err != nil {
		out.Ping = err.Error()
	}
	for _, q := range req.Queries {
		out.Results = append(out.Results, run(ctx, db, q))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "cannot encode:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, db *sql.DB, q query) result {
	res := result{Name: q.Name, Rows: [][]any{}}
	rows, err := db.QueryContext(ctx, q.SQL)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, t := range types {
		res.Columns = append(res.Columns, t.Name())
		res.Types = append(res.Types, t.DatabaseTypeName())
	}
	for rows.Next() {
		values := make([]any, len(types))
		targets := make([]any, len(types))
		for i, t := range types {
			targets[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(targets...); err != nil {
			res.Error = err.Error()
			return res
		}
		for i := range targets {
			values[i] = plain(reflect.ValueOf(targets[i]).Elem().Interface())
		}
		res.Rows = append(res.Rows, values)
	}
	if err := rows.Err(); err != nil {
		res.Error = err.Error()
	}
	return res
}

// plain turns what the driver decoded into JSON values: times as RFC 3339 in UTC, non-finite
// floats as strings, nested values recursively.
func plain(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return float(x)
	case float32:
		return float(float64(x))
	case *big.Int:
		return x.String()
	case net.IP:
		return x.String()
	case []byte:
		return string(x)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return plain(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = plain(rv.Index(i).Interface())
		}
		return items
	case reflect.Map:
		items := map[string]any{}
		for _, key := range rv.MapKeys() {
			items[fmt.Sprint(key.Interface())] = plain(rv.MapIndex(key).Interface())
		}
		return items
	}
	return v
}

func float(x float64) any {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	}
	return x
}
