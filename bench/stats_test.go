package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestSummarize(t *testing.T) {
	// 1..100 ms shuffled: type-7 percentiles are 50.5, 90.1 and 99.01 ms.
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(s)
	want := Summary{N: 100, Min: time.Millisecond, Median: 50500 * time.Microsecond, P90: 90100 * time.Microsecond,
		P99: 99010 * time.Microsecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("Summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	if s[0] != 100*time.Millisecond {
		t.Errorf("Summarize sorted its argument")
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v", got)
	}
	if got := Summarize(ms(7)); got.Median != 7*time.Millisecond || got.P99 != 7*time.Millisecond || got.N != 1 {
		t.Errorf("Summarize(one) = %+v", got)
	}
}

func TestPercentile(t *testing.T) {
	s := ms(1, 2, 3, 4)
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, ms(1)[0]}, {50, ms(2.5)[0]}, {100, ms(4)[0]}, {-5, ms(1)[0]}, {250, ms(4)[0]}, {99, ms(3.97)[0]}} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("Percentile(1..4 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestRatios(t *testing.T) {
	if got := Ratio(3*time.Millisecond, 2*time.Millisecond); got != 1.5 {
		t.Errorf("Ratio = %v", got)
	}
	if !math.IsNaN(Ratio(1, 0)) {
		t.Errorf("Ratio(_, 0) is not NaN")
	}
	// Drift: round 3 is slow for both; the paired ratio ignores it.
	a, b := ms(2, 2, 20, 2), ms(1, 1, 10, 1)
	if got := PairedRatio(a, b); got != 2 {
		t.Errorf("PairedRatio = %v, want 2", got)
	}
	if got := PairedRatio(ms(1, 3), ms(1, 1)); got != 2 {
		t.Errorf("PairedRatio of an even count = %v, want the mean of the middle two, 2", got)
	}
	if !math.IsNaN(PairedRatio(ms(1), ms(0))) {
		t.Errorf("PairedRatio without a usable pair is not NaN")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{850 * time.Microsecond, "850 µs"}, {2345 * time.Microsecond, "2.35 ms"}, {1500 * time.Millisecond, "1.500 s"}} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		r    float64
		want string
	}{{1.234, "1.23×"}, {48.71, "48.7×"}, {math.NaN(), "–"}, {math.Inf(1), "–"}} {
		if got := FormatRatio(tc.r); got != tc.want {
			t.Errorf("FormatRatio(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestSplice(t *testing.T) {
	doc := "# Benchmarks\n\nprose\n\n" + BeginMarker + "\nold\n" + EndMarker + "\n\nmore prose\n"
	got := Splice(doc, "new table\n")
	want := "# Benchmarks\n\nprose\n\n" + BeginMarker + "\nnew table\n" + EndMarker + "\n\nmore prose\n"
	if got != want {
		t.Errorf("Splice replaced wrongly:\n%s", got)
	}
	if got := Splice("# B\n", "x"); got != "# B\n\n"+BeginMarker+"\nx\n"+EndMarker+"\n" {
		t.Errorf("Splice without markers = %q", got)
	}
	if got := Splice("", "x"); got != BeginMarker+"\nx\n"+EndMarker+"\n" {
		t.Errorf("Splice of an empty doc = %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	r := Report{
		Machine: Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.1", LoadBefore: "0.5", LoadAfter: "0.7"},
		Command: "make bench",
		Targets: []Target{{Name: "steady ÷ floor", Goal: "≤ 2×", Measured: "1.50×", Met: true}, {Name: "a|b", Goal: "g", Measured: "m"}},
		Sections: []Section{{
			Title:     "Hook",
			Notes:     []string{"How."},
			RatioCols: []string{"vs floor"},
			Rows: []Row{
				{Scenario: "steady", Candidate: "hook", Summary: Summary{N: 3, Median: 2 * time.Millisecond, P90: 3 * time.Millisecond, P99: 4 * time.Millisecond},
					CPU: time.Millisecond, Ratios: map[string]float64{"vs floor": 2}},
				{Scenario: "floor", Candidate: "floor", Summary: Summary{N: 3, Median: time.Millisecond}},
			},
			Values: []Value{{Name: "RSS", Value: "20.0 MiB", Note: "VmRSS"}},
		}},
	}
	md := r.Markdown()
	for _, want := range []string{
		"| CPU | Test CPU, 2 cores |",
		"| load average (1 min) before / after | 0.5 / 0.7 |",
		"| steady ÷ floor | ≤ 2× | 1.50× | yes |",
		`| a\|b | g | m | **no** |`,
		"### Hook\n\nHow.\n\n| scenario | candidate | runs | median | p90 | p99 | CPU (median) | vs floor |",
		"| steady | hook | 3 | 2.00 ms | 3.00 ms | 4.00 ms | 1.00 ms | 2.00× |",
		"| floor | floor | 3 | 1.00 ms | 0 µs | 0 µs | – |  |",
		"| RSS | 20.0 MiB | VmRSS |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| QEMU |") {
		t.Errorf("Markdown shows an empty machine field:\n%s", md)
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Other\n"
	if got := CPUModel(info); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("CPUModel = %q", got)
	}
	if got := CPUModel("nothing"); got != "" {
		t.Errorf("CPUModel without model name = %q", got)
	}
}
