package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	portInfoDesc = prometheus.NewDesc(PortInfo,
		"A VM NIC's port, value 1: join a libvirt exporter's target_device or node_exporter's device (the tap) to the VM.",
		[]string{"domain", "uuid", "target_device", "mac", "source_bridge"}, nil)
	bridgeUpDesc = prometheus.NewDesc(BridgeUp,
		"1 when the managed bridge exists and is up.", []string{"bridge"}, nil)
	uplinkDesc = prometheus.NewDesc(BridgeUplinkEnslaved,
		"1 when the bridge's uplink is enslaved to it (bridges with an uplink only).", []string{"bridge", "uplink"}, nil)
	addrDesc = prometheus.NewDesc(BridgeHostAddress,
		"1 when the bridge holds a host address (IPv4 or global IPv6).", []string{"bridge"}, nil)
)

// stateCollector reads a State at every scrape: no cache to go stale, and
// nothing done between scrapes.
type stateCollector struct {
	st     State
	errors prometheus.Counter
}

func newStateCollector() *stateCollector {
	return &stateCollector{errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: StateErrors, Help: "Scrapes that could not read the mapping store or the bridges.",
	})}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- portInfoDesc
	ch <- bridgeUpDesc
	ch <- uplinkDesc
	ch <- addrDesc
	c.errors.Describe(ch)
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	if c.st == nil {
		return
	}
	ports, err := c.st.Ports()
	if err != nil {
		c.errors.Inc()
	}
	for _, p := range ports {
		ch <- prometheus.MustNewConstMetric(portInfoDesc, prometheus.GaugeValue, 1, p.Domain, p.UUID, p.Tap, p.MAC, p.Bridge)
	}
	bridges, err := c.st.Bridges()
	if err != nil {
		c.errors.Inc()
	}
	for _, b := range bridges {
		ch <- prometheus.MustNewConstMetric(bridgeUpDesc, prometheus.GaugeValue, one(b.Up), b.Name)
		if b.Uplink != "" {
			ch <- prometheus.MustNewConstMetric(uplinkDesc, prometheus.GaugeValue, one(b.UplinkEnslaved), b.Name, b.Uplink)
		}
		ch <- prometheus.MustNewConstMetric(addrDesc, prometheus.GaugeValue, one(b.HostAddress), b.Name)
	}
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
