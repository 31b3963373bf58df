package firewall

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
)

type fakeDetector struct {
	have   []Variant
	counts map[Variant]int
	err    error
	asked  []Variant
}

func (d *fakeDetector) installed(v Variant) bool { return slices.Contains(d.have, v) }

func (d *fakeDetector) rules(v Variant) (int, error) {
	d.asked = append(d.asked, v)
	return d.counts[v], d.err
}

func TestChooseVariant(t *testing.T) {
	boom := errors.New("boom")
	both := []Variant{NFT, Legacy}
	for _, tc := range []struct {
		name   string
		have   []Variant
		counts map[Variant]int
		err    error
		want   Variant
		wantE  error
		asked  []Variant // the iptables-save runs it may cost
	}{
		{name: "none installed", wantE: ErrNoIptables},
		{name: "only nft", have: []Variant{NFT}, counts: map[Variant]int{Legacy: 5}, want: NFT},
		{name: "only legacy", have: []Variant{Legacy}, counts: map[Variant]int{NFT: 5}, want: Legacy},
		{name: "both empty", have: both, want: NFT, asked: []Variant{Legacy}},
		{name: "rules only in nft", have: both, counts: map[Variant]int{NFT: 3}, want: NFT, asked: []Variant{Legacy}},
		{name: "rules only in legacy", have: both, counts: map[Variant]int{Legacy: 3}, want: Legacy, asked: []Variant{Legacy, NFT}},
		{name: "rules in both", have: both, counts: map[Variant]int{Legacy: 3, NFT: 1}, want: NFT, asked: []Variant{Legacy, NFT}},
		{name: "count fails", have: both, err: boom, wantE: boom, asked: []Variant{Legacy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDetector{have: tc.have, counts: tc.counts, err: tc.err}
			got, err := chooseVariant(d)
			if !errors.Is(err, tc.wantE) || got != tc.want {
				t.Errorf("chooseVariant = %q, %v; want %q, %v", got, err, tc.want, tc.wantE)
			}
			if fmt.Sprint(d.asked) != fmt.Sprint(tc.asked) {
				t.Errorf("counted rules of %v, want %v", d.asked, tc.asked)
			}
		})
	}
}

func TestVariantOf(t *testing.T) {
	for b, want := range map[string]Variant{"iptables": "", "": "", "iptables-nft": NFT, "iptables-legacy": Legacy} {
		if got, err := variantOf(b); err != nil || got != want {
			t.Errorf("variantOf(%q) = %q, %v; want %q", b, got, err, want)
		}
	}
	if _, err := variantOf("nftables"); err == nil {
		t.Error(`variantOf("nftables"): no error`)
	}
}

func TestStateDecisions(t *testing.T) {
	fx := facts{Boot: "b1", Cookie: 7, Legacy: "|", Gen: 42, GenOK: true}
	spec := specHash(NFT, []string{"br0"}, false)
	good := &state{facts: fx, Backend: BackendAuto, Variant: NFT, Spec: spec}
	if !good.unchanged(fx, BackendAuto, spec) {
		t.Error("same facts and spec: not unchanged")
	}
	var nilState *state
	if nilState.unchanged(fx, BackendAuto, spec) {
		t.Error("no state: unchanged")
	}
	for name, mod := range map[string]func(*state, *facts, *string){
		"generation bumped":     func(_ *state, f *facts, _ *string) { f.Gen++ },
		"no generation":         func(_ *state, f *facts, _ *string) { f.GenOK = false },
		"other namespace":       func(_ *state, f *facts, _ *string) { f.Cookie++ },
		"no namespace cookie":   func(s *state, f *facts, _ *string) { s.Cookie, f.Cookie = 0, 0 },
		"rebooted":              func(_ *state, f *facts, _ *string) { f.Boot = "b2" },
		"legacy table appeared": func(_ *state, f *facts, _ *string) { f.Legacy = "filter|" },
		"other bridges":         func(_ *state, _ *facts, s *string) { *s = specHash(NFT, []string{"br1"}, false) },
		"native tables leave":   func(_ *state, _ *facts, s *string) { *s = specHash(NFT, []string{"br0"}, true) },
		"other backend":         func(s *state, _ *facts, _ *string) { s.Backend = BackendNFT },
		"legacy variant":        func(s *state, _ *facts, _ *string) { s.Variant = Legacy },
	} {
		s, f, sp := *good, fx, spec
		mod(&s, &f, &sp)
		if s.unchanged(f, BackendAuto, sp) {
			t.Errorf("%s: still unchanged", name)
		}
	}

	if v, ok := good.cachedVariant(facts{Boot: "b1", Cookie: 7, Legacy: "|", Gen: 99, GenOK: true}); !ok || v != NFT {
		t.Errorf("nft detection with another generation: %q %v, want cached nft", v, ok)
	}
	leg := &state{facts: fx, Backend: BackendAuto, Variant: Legacy}
	if _, ok := leg.cachedVariant(facts{Boot: "b1", Cookie: 7, Legacy: "|", Gen: 43, GenOK: true}); ok {
		t.Error("legacy detection survives an nf_tables change")
	}
	if v, ok := leg.cachedVariant(fx); !ok || v != Legacy {
		t.Errorf("legacy detection, nothing changed: %q %v", v, ok)
	}
	if _, ok := (&state{facts: fx, Backend: BackendNFT, Variant: NFT}).cachedVariant(fx); ok {
		t.Error("a forced backend's variant is reused for detection")
	}
	noCookie := fx
	noCookie.Cookie = 0
	if _, ok := (&state{facts: noCookie, Backend: BackendAuto, Variant: NFT}).cachedVariant(noCookie); ok {
		t.Error("without a namespace cookie the detected variant is reused")
	}
}

// TestOldStateFileIsDistrusted: a state file of the format keyed by the
// namespace's inode ("netns") reads as having no cookie, so neither the
// fast path nor the cached variant believes it, whatever the inode and
// generation say.
func TestOldStateFileIsDistrusted(t *testing.T) {
	p := t.TempDir() + "/firewall.state"
	spec := specHash(NFT, []string{"br0"}, false)
	old := `{"boot_id":"b1","netns":4026532174,"legacy_tables":"|","gen":42,"gen_ok":true,"backend":"iptables","variant":"nft","spec":"` + spec + `"}`
	if err := os.WriteFile(p, []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(p)
	if err != nil || st == nil {
		t.Fatalf("loadState(old format) = %+v, %v", st, err)
	}
	for _, cookie := range []uint64{0, 1, 4026532174} {
		fx := facts{Boot: "b1", Cookie: cookie, Legacy: "|", Gen: 42, GenOK: true}
		if st.unchanged(fx, BackendAuto, spec) {
			t.Errorf("an old-format state vouches for namespace cookie %d", cookie)
		}
		if _, ok := st.cachedVariant(fx); ok {
			t.Errorf("an old-format state gives its variant to namespace cookie %d", cookie)
		}
	}
}

func TestStateFile(t *testing.T) {
	p := t.TempDir() + "/sub/firewall.state"
	if s, err := loadState(p); s != nil || err != nil {
		t.Fatalf("missing file: %v, %v", s, err)
	}
	want := state{facts: facts{Boot: "b", Cookie: 1, Gen: 5, GenOK: true}, Backend: "iptables", Variant: NFT, Spec: "x"}
	if err := saveState(p, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(p)
	if err != nil || got == nil || *got != want {
		t.Errorf("loaded %+v, %v; want %+v", got, err, want)
	}
	if err := removeState(p); err != nil {
		t.Fatal(err)
	}
	if err := removeState(p); err != nil {
		t.Errorf("removing again: %v", err)
	}
}
