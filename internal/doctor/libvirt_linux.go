package doctor

import (
	"errors"
	"fmt"
	"time"

	"libvirt.org/go/libvirt"
)

// DefaultURI is the libvirt connection the hook's domains live on.
const DefaultURI = "qemu:///system"

// LibvirtDomains lists domains over a read-only libvirt connection.
type LibvirtDomains struct {
	URI string
	// Timeout bounds the whole listing: a libvirtd that hangs must not
	// hang the doctor. 0 means 5 s.
	Timeout time.Duration
}

var _ Domains = LibvirtDomains{}

// Domains returns every defined or running domain with its XML. It
// changes nothing.
func (l LibvirtDomains) Domains() ([]Domain, error) {
	uri := l.URI
	if uri == "" {
		uri = DefaultURI
	}
	limit := l.Timeout
	if limit <= 0 {
		limit = 5 * time.Second
	}
	type result struct {
		ds  []Domain
		err error
	}
	done := make(chan result, 1)
	// libvirt calls cannot be cancelled: on a timeout the goroutine is
	// left behind, which the CLI's exit ends.
	go func() {
		ds, err := listDomains(uri)
		done <- result{ds, err}
	}()
	select {
	case r := <-done:
		return r.ds, r.err
	case <-time.After(limit):
		return nil, fmt.Errorf("libvirtd at %s did not answer within %v", uri, limit)
	}
}

func listDomains(uri string) ([]Domain, error) {
	c, err := libvirt.NewConnectReadOnly(uri)
	if err != nil {
		return nil, fmt.Errorf("connecting to libvirt at %s: %w", uri, libvirtMessage(err))
	}
	defer c.Close()
	doms, err := c.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("listing domains at %s: %w", uri, libvirtMessage(err))
	}
	defer func() {
		for i := range doms {
			_ = doms[i].Free()
		}
	}()
	var out []Domain
	for i := range doms {
		d, err := domainOf(&doms[i])
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			continue // undefined meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading domains at %s: %w", uri, libvirtMessage(err))
		}
		out = append(out, d)
	}
	return out, nil
}

func domainOf(d *libvirt.Domain) (Domain, error) {
	var out Domain
	var err error
	if out.Name, err = d.GetName(); err != nil {
		return out, err
	}
	if out.UUID, err = d.GetUUIDString(); err != nil {
		return out, err
	}
	if out.Active, err = d.IsActive(); err != nil {
		return out, err
	}
	out.XML, err = d.GetXMLDesc(0)
	return out, err
}

// libvirtMessage shows a libvirt error by its message rather than the
// binding's "virError(Code=..., Message='...')"; errors.Is still reaches
// the libvirt.Error.
func libvirtMessage(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && le.Message != "" {
		return messageError{le}
	}
	return err
}

type messageError struct{ err libvirt.Error }

func (e messageError) Error() string { return e.err.Message }
func (e messageError) Unwrap() error { return e.err }
