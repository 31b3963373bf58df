package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard that holds queries.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var metricName = regexp.MustCompile(`\bvirtbridge_[a-z_]+`)

// TestDashboardQueriesServedMetrics: every query of the Grafana dashboard
// shipped under packaging/grafana names at least one metric, and only
// metrics virtbridged serves (a histogram's _bucket, _sum, _count
// included).
func TestDashboardQueriesServedMetrics(t *testing.T) {
	path := filepath.Join("..", "..", "packaging", "grafana", "virtbridge-dashboard.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	queries := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			queries[p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("%s: variable %s: %v", path, v.Name, err)
		}
		queries["variable "+v.Name] = q.Query
	}
	if len(queries) < 10 {
		t.Fatalf("%s: %d queries found; is the dashboard's layout what this test reads?", path, len(queries))
	}
	for where, q := range queries {
		names := metricName.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: query %q names no virtbridge metric", where, q)
		}
		for _, n := range names {
			family := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if f, ok := strings.CutSuffix(n, suffix); ok && f == HotplugWired {
					family = f
				}
			}
			if !slices.Contains(Names, family) {
				t.Errorf("%s: query %q names %s, which virtbridged does not serve", where, q, n)
			}
		}
	}
}
