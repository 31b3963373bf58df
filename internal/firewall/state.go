package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/virtbridge/virtbridge/internal/paths"
)

// DefaultStatePath is where a Firewall remembers its last verified state.
const DefaultStatePath = "/run/virtbridge/firewall.state"

// facts identify the ruleset a verdict was reached on. They are cheap: a
// few small /proc reads and one netlink round trip (and a getsockopt on
// its socket), no iptables run.
//
// The generation is per network namespace, so the namespace is part of
// the key. Its inode number is not: the kernel hands a freed number to the
// next namespace, which starts counting generations from 1 again, and a
// state recorded in a deleted namespace would then vouch for rules its
// successor never had. The namespace cookie (SO_NETNS_COOKIE) is never
// reused while the kernel runs. Without one (Linux < 5.14, or no
// nf_tables netlink socket) Cookie is 0 and no state is trusted. A state file written before the cookie has no
// "netns_cookie" (its "netns" was the inode) and reads as cookie 0, so it
// is not trusted either.
type facts struct {
	Boot   string `json:"boot_id"`       // a generation id means nothing across boots
	Cookie uint64 `json:"netns_cookie"`  // the namespace's cookie; 0: the kernel has none
	Legacy string `json:"legacy_tables"` // ip_tables_names + ip6_tables_names
	Gen    uint32 `json:"gen"`           // nf_tables ruleset generation
	GenOK  bool   `json:"gen_ok"`        // false: nf_tables did not answer
}

// legacyHasFilter reports whether the legacy filter table of family fam
// exists. Reading it with iptables-legacy would create it otherwise.
func (fx facts) legacyHasFilter(fam Family) bool {
	return strings.Contains("\n"+fx.legacyNames(fam)+"\n", "\nfilter\n")
}

// legacyNames returns the legacy tables of family fam, one per line.
func (fx facts) legacyNames(fam Family) string {
	v4, v6, _ := strings.Cut(fx.Legacy, "|")
	if fam == IPv6 {
		return v6
	}
	return v4
}

// state is what the last successful Ensure found and left.
type state struct {
	facts
	Backend string  `json:"backend"` // as configured
	Variant Variant `json:"variant"` // as used
	Spec    string  `json:"spec"`    // specHash of the rules
}

// sameHost reports whether s was recorded on the namespace and boot of fx
// with the same legacy tables loaded. Without a namespace cookie it is
// never sure.
func (s *state) sameHost(fx facts) bool {
	return s != nil && fx.Cookie != 0 && s.Cookie == fx.Cookie && s.Boot == fx.Boot && s.Legacy == fx.Legacy
}

// unchanged reports whether s proves that the nf_tables ruleset still
// holds spec: same namespace, same generation, same wanted rules.
func (s *state) unchanged(fx facts, backend, spec string) bool {
	return s.sameHost(fx) && s.Backend == backend && s.Variant == NFT && s.Spec == spec &&
		fx.GenOK && s.GenOK && s.Gen == fx.Gen
}

// cachedVariant returns the variant detected before, while still valid:
// for nft while no legacy table appeared; for legacy while also nf_tables
// did not change.
func (s *state) cachedVariant(fx facts) (Variant, bool) {
	if !s.sameHost(fx) || s.Backend != BackendAuto {
		return "", false
	}
	if s.Variant == NFT || s.Variant == Legacy && fx.GenOK && s.GenOK && s.Gen == fx.Gen {
		return s.Variant, true
	}
	return "", false
}

func specHash(v Variant, bridges []string, leaveNative bool) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\n%s\nnative leave %v\n%s", specVersion, v, leaveNative, strings.Join(bridges, "\n"))))
	return hex.EncodeToString(h[:16])
}

// loadState reads the state file. A missing or unreadable-as-JSON file is
// no state (it is rewritten after the next verify); other errors are
// returned.
func loadState(path string) (*state, error) {
	if path == "" {
		return nil, nil
	}
	// It lets the fast path skip reading the rules: trust only a regular,
	// root-owned file that is no link (paths.OpenFile). An untrusted one is
	// no state: the rules are read and verified, and the save replaces it
	// (a rename replaces a link, never its target).
	f, err := paths.OpenFile(path, os.O_RDONLY, 0)
	var unsafe *paths.UnsafeError
	if errors.Is(err, fs.ErrNotExist) || errors.As(err, &unsafe) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading firewall state %q: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading firewall state %q: %w", path, err)
	}
	var s state
	if json.Unmarshal(b, &s) != nil {
		return nil, nil
	}
	return &s, nil
}

// saveState replaces the state file atomically and durably
// (paths.WriteAtomic), so a concurrent reader sees the old or the new
// state, never a part, and a power cut never leaves an empty file.
func saveState(path string, s state) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(s)
	if err == nil {
		err = paths.WriteAtomic(path, append(b, '\n'), stateMode)
	}
	if err != nil {
		return fmt.Errorf("writing firewall state %q: %w", path, err)
	}
	return nil
}

// stateMode is the state file's mode: only root reads the cache.
const stateMode = 0o600

// removeState forgets the state; already gone is success.
func removeState(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing firewall state %q: %w", path, err)
	}
	return nil
}
