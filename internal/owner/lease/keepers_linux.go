package lease

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// Manager is the desired.Bridge.Manager value of the opt-in.
const Manager = "virtbridged"

// stopPatience bounds the wait for a foreign client to exit on SIGTERM.
const stopPatience = 10 * time.Second

// unknownLife is the lifetime given to an address taken over whose lease
// is unknown (a permanent address on the bridge, seen after a restart of
// virtbridged that lost the status): the server has that long to confirm
// it.
const unknownLife = 5 * time.Minute

// Keepers runs virtbridged's Keepers, one per bridge with manager:
// virtbridged. Its methods are safe for concurrent use.
type Keepers struct {
	RunDir string
	// Journal journals host changes (the foreign client stopped, the lease
	// kept, renewed, lost).
	Journal func(ctx context.Context, cs []change.Change)
	Log     *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running map[string]*keeping
	// orphans are the Keepers stopped because their bridge went or was
	// made again (drift): After resumes their leases on the bridge made
	// again.
	orphans map[string]*keeping
}

// keeping is one running Keeper, as Keepers holds it.
type keeping struct {
	uplink string
	id     Identity
	index  int // the bridge's link index the client's socket is bound to
	cancel context.CancelFunc
	done   chan struct{}
	lease  Lease // what it held when it stopped
}

// NewKeepers returns Keepers whose Keepers run until Close.
func NewKeepers(runDir string, journal func(context.Context, []change.Change), log *slog.Logger) *Keepers {
	ctx, cancel := context.WithCancel(context.Background())
	return &Keepers{RunDir: runDir, Journal: journal, Log: log, ctx: ctx, cancel: cancel,
		running: map[string]*keeping{}, orphans: map[string]*keeping{}}
}

// Before reads, for each bridge of bs with manager: virtbridged whose
// lease no Keeper keeps yet, what the kernel path is about to move off its
// uplink (Inspect). Read-only; call it before the bridges are made.
func (k *Keepers) Before(bs []desired.Bridge) map[string]Takeover {
	out := map[string]Takeover{}
	for _, b := range k.pending(bs) {
		up := uplinkOf(b)
		if up == "" {
			continue
		}
		if t, ok, err := Inspect(up, time.Now()); err != nil {
			k.Log.Warn("reading the uplink's lease", "bridge", b.Name, "err", err)
		} else if ok {
			out[b.Name] = t
		}
	}
	return out
}

// pending are the bridges of bs with manager: virtbridged and no Keeper.
func (k *Keepers) pending(bs []desired.Bridge) []desired.Bridge {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []desired.Bridge
	for _, b := range bs {
		if b.Manager == Manager && k.running[b.Name] == nil {
			out = append(out, b)
		}
	}
	return out
}

// After starts a Keeper for each bridge of bs with manager: virtbridged
// that has none and is made (its uplink a port of it, an IPv4 address on
// it): it stops the foreign DHCP clients of the uplink (journaled), gives
// the address the lease's remaining lifetime and asks the server for it
// again. before is what Before read. A bridge whose Keeper Sync stopped
// because the bridge went or was made again gets it back with its lease
// once it is made (resume). Errors are joined; the bridges that failed
// are tried again at the next call.
func (k *Keepers) After(ctx context.Context, bs []desired.Bridge, before map[string]Takeover) error {
	var errs []error
	for _, b := range k.pending(bs) {
		if err := k.start(ctx, b, before[b.Name]); err != nil {
			errs = append(errs, fmt.Errorf("keeping the lease of bridge %q: %w", b.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (k *Keepers) start(ctx context.Context, b desired.Bridge, t Takeover) error {
	k.mu.Lock()
	o := k.orphans[b.Name]
	k.mu.Unlock()
	if o != nil {
		return k.resume(ctx, b.Name, o)
	}
	if t.Uplink == "" {
		var ok bool
		if t, ok = k.fromBridge(b); !ok {
			return nil // not made (yet): the kernel path said why
		}
	}
	if !made(b.Name, t.Uplink) {
		return nil
	}
	cs, err := StopClients(ctx, t.Uplink, t.Clients, stopPatience)
	k.Journal(ctx, cs)
	if len(cs) > 0 {
		if err := WriteStopped(k.RunDir, Stopped{Bridge: b.Name, Uplink: t.Uplink, Clients: t.Clients, At: time.Now()}); err != nil {
			k.Log.Warn("recording the stopped DHCP clients", "bridge", b.Name, "err", err)
		}
	}
	if err != nil {
		return err
	}
	addr := BridgeAddr{Link: b.Name}
	if err := addr.Set(t.Lease.Addr, t.Lease.Remaining(time.Now())); err != nil {
		return err
	}
	if err := k.launch(b.Name, t.Uplink, Identity{MAC: t.MAC, ClientID: t.ClientID}, t.Lease); err != nil {
		return err
	}
	k.Log.Info("keeping the lease on the bridge", "bridge", b.Name, "uplink", t.Uplink, "address", t.Lease.Addr.String(),
		"left", t.Lease.Remaining(time.Now()).Round(time.Second), "client_id", hex.EncodeToString(t.ClientID))
	return nil
}

// launch runs a Keeper of lease l on bridge (made: its uplink a port).
func (k *Keepers) launch(bridge, uplink string, id Identity, l Lease) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("reading bridge %q: %w", bridge, err)
	}
	c, err := Dial(bridge, id.MAC)
	if err != nil {
		return err
	}
	kp := &Keeper{Bridge: bridge, Uplink: uplink, ID: id, Transport: c, Addr: BridgeAddr{Link: bridge},
		Routes: BridgeRoutes{Link: bridge}, Rec: &recorder{k: k, clientID: id.ClientID}}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx.Err() != nil {
		c.Close()
		return nil
	}
	ctx, cancel := context.WithCancel(k.ctx)
	kg := &keeping{uplink: uplink, id: id, index: br.Attrs().Index, cancel: cancel, done: make(chan struct{})}
	k.running[bridge] = kg
	delete(k.orphans, bridge)
	k.wg.Go(func() {
		defer close(kg.done)
		defer c.Close()
		kg.lease = kp.Run(ctx, l)
		if err := RemoveStatus(k.RunDir, bridge); err != nil {
			k.Log.Warn("removing the lease status", "bridge", bridge, "err", err)
		}
	})
	return nil
}

// fromBridge is the takeover of a bridge made earlier (virtbridged
// restarted): its first global IPv4 address with a lifetime, or a
// permanent one that the last status names (given unknownLife), the
// client identifier of that status, and the DHCP clients bound to the
// uplink again. A permanent address no status names is a static one:
// nothing to keep (a NAK would take it away).
func (k *Keepers) fromBridge(b desired.Bridge) (Takeover, bool) {
	up := uplinkOf(b)
	br, err := netlink.LinkByName(b.Name)
	if up == "" || err != nil {
		return Takeover{}, false
	}
	as, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return Takeover{}, false
	}
	for _, a := range as {
		p, ok := prefixOf(a)
		if !ok || !p.Addr().IsGlobalUnicast() {
			continue
		}
		last, known, _ := readAny(k.RunDir, b.Name)
		life := time.Duration(a.ValidLft) * time.Second
		if a.ValidLft <= 0 || a.ValidLft == int(^uint32(0)) {
			if !known || last.Addr != p.String() {
				continue
			}
			life = unknownLife
		}
		t := Takeover{Uplink: up, MAC: br.Attrs().HardwareAddr, Lease: Lease{Addr: p, Start: time.Now(), Duration: life},
			Clients: dhcp.Processes("/proc", up, dhcp.NSInode(netns.None()))}
		if known {
			t.ClientID, _ = hex.DecodeString(last.ClientID)
		}
		return t, true
	}
	return Takeover{}, false
}

// Close stops every Keeper and waits for them: the addresses stay with
// their remaining lifetime; the status files go.
func (k *Keepers) Close() {
	k.mu.Lock()
	k.cancel()
	k.mu.Unlock()
	k.wg.Wait()
}

// recorder is a Keeper's Recorder in virtbridged.
type recorder struct {
	k        *Keepers
	clientID []byte
	last     Status
}

func (r *recorder) Change(ctx context.Context, c change.Change) {
	r.k.Log.Info("host changed", "change", c.String())
	r.k.Journal(ctx, []change.Change{c})
}

func (r *recorder) State(s Status) {
	s.ClientID = hex.EncodeToString(r.clientID)
	if s == r.last {
		return
	}
	r.last = s
	if err := WriteStatus(r.k.RunDir, s); err != nil {
		r.k.Log.Warn("writing the lease status", "bridge", s.Bridge, "err", err)
	}
}

func (r *recorder) Problem(err error) { r.k.Log.Warn("problem", "err", err) }

// uplinkOf is b's uplink: b.Uplink, or the one link with b.UplinkMAC that
// is no bridge or VLAN ("" when none).
func uplinkOf(b desired.Bridge) string {
	if b.Uplink != "" {
		return b.Uplink
	}
	ls, err := netlink.LinkList()
	if err != nil {
		return ""
	}
	var found []string
	for _, l := range ls {
		if t := l.Type(); t != "bridge" && t != "vlan" && l.Attrs().HardwareAddr.String() == b.UplinkMAC {
			found = append(found, l.Attrs().Name)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// made reports whether uplink is a port of bridge.
func made(bridge, uplink string) bool {
	br, err1 := netlink.LinkByName(bridge)
	up, err2 := netlink.LinkByName(uplink)
	return err1 == nil && err2 == nil && up.Attrs().MasterIndex == br.Attrs().Index
}
