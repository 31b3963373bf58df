// Package bench holds the pure parts of virtbridge's benchmark harness
// (bench/cmd/vbbench): summaries of timing samples, ratios, the machine
// description and the Markdown report that `make bench` writes to
// docs/BENCHMARKS.md. It runs nothing and needs no privileges, so its unit
// tests are quick.
package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary describes one sample of durations.
type Summary struct {
	N      int
	Min    time.Duration
	Median time.Duration
	P90    time.Duration
	P99    time.Duration
	Max    time.Duration
}

// Summarize returns the summary of samples (which it does not modify). An
// empty sample gives the zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Summary{
		N:      len(s),
		Min:    s[0],
		Median: Percentile(s, 50),
		P90:    Percentile(s, 90),
		P99:    Percentile(s, 99),
		Max:    s[len(s)-1],
	}
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of sorted, by
// linear interpolation between the two closest ranks (the "type 7"
// estimator of R and NumPy's default): with 100 samples p99 lies between
// the 99th and the 100th value. sorted must be sorted ascending and not
// empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 1 {
		return sorted[0]
	}
	p = math.Max(0, math.Min(100, p))
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := rank - float64(lo)
	return sorted[lo] + time.Duration(math.Round(frac*float64(sorted[lo+1]-sorted[lo])))
}

// Ratio is a/b, or NaN when b is zero.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// PairedRatio returns the median of a[i]/b[i] over the pairs measured in
// the same round: a ratio that drift between rounds (another job taking
// the CPU for a while) cancels out of. Pairs with a zero b are skipped; NaN
// when none is left. a and b must be of the same length.
func PairedRatio(a, b []time.Duration) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, float64(a[i])/float64(b[i]))
		}
	}
	if len(rs) == 0 {
		return math.NaN()
	}
	slices.Sort(rs)
	mid := len(rs) / 2
	if len(rs)%2 == 1 {
		return rs[mid]
	}
	return (rs[mid-1] + rs[mid]) / 2
}

// FormatDuration renders d for the tables: microseconds below 1 ms,
// milliseconds with two decimals below 1 s, seconds with three above.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
}

// FormatRatio renders r as "1.85×" ("–" for NaN).
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	if r >= 10 {
		return fmt.Sprintf("%.1f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}
