package client

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/units"
	"github.com/delegate-io/delegate/internal/wire"
)

// Hints are a file's tunables, set at open (MPI_Info at MPI_File_open)
// and, except where a hint says otherwise, later (MPI_File_set_info).
type Hints struct {
	RegionSize int64 // delegate_region_size: bytes per region (open only)
	Cork       bool  // delegate_cork: batch writes until uncork
	CorkBytes  int64 // delegate_cork_size: a corked batch is sent when it holds this much
	WriteAck   bool  // delegate_write_ack=sync: writes wait for the servers' acknowledgement
	AsyncClose bool  // delegate_async_close: close returns once the servers hold the data

	// ROMIO's striping hints (open only, not enumerated: ROMIO reports
	// them itself): the region size follows them (route.FitRegion) unless
	// delegate_region_size is given.
	StripeUnit   int64 // striping_unit
	StripeFactor int64 // striping_factor
	regionSet    bool  // delegate_region_size was given
}

// romioHints are ROMIO's own hints the driver passes at open
// (adio_delegate/ad_delegate_hints.c): read here, reported by ROMIO.
var romioHints = []hintDef{
	{"striping_unit", true,
		func(h *Hints) string { return strconv.FormatInt(h.StripeUnit, 10) },
		func(h *Hints, v string) error { return setCount(&h.StripeUnit, v) }},
	{"striping_factor", true,
		func(h *Hints) string { return strconv.FormatInt(h.StripeFactor, 10) },
		func(h *Hints, v string) error { return setCount(&h.StripeFactor, v) }},
}

// setCount parses a ROMIO integer hint: a number (with ROMIO's own check
// already passed); 0 or less means not set.
func setCount(dst *int64, v string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer")
	}
	*dst = max(n, 0)
	return nil
}

type hintDef struct {
	name     string
	openOnly bool
	get      func(*Hints) string
	set      func(*Hints, string) error
}

// hintTable lists every hint the library knows, in the order
// delegate_hint_name enumerates them.
var hintTable = []hintDef{
	{"delegate_region_size", true,
		func(h *Hints) string { return strconv.FormatInt(h.RegionSize, 10) },
		func(h *Hints, v string) error {
			n, err := units.ParseSize(v)
			if err == nil {
				err = route.CheckRegionSize(n)
			}
			h.RegionSize, h.regionSet = n, true
			return err
		}},
	{"delegate_cork", false,
		func(h *Hints) string { return boolString(h.Cork) },
		func(h *Hints, v string) (err error) { h.Cork, err = parseBool(v); return }},
	{"delegate_cork_size", false,
		func(h *Hints) string { return strconv.FormatInt(h.CorkBytes, 10) },
		func(h *Hints, v string) error {
			n, err := units.ParseSize(v)
			if err == nil && n < 4096 {
				err = fmt.Errorf("cork size %d is below 4096", n)
			}
			h.CorkBytes = n
			return err
		}},
	{"delegate_write_ack", false,
		func(h *Hints) string {
			if h.WriteAck {
				return "sync"
			}
			return "async"
		},
		func(h *Hints, v string) error {
			switch v {
			case "sync":
				h.WriteAck = true
			case "async":
				h.WriteAck = false
			default:
				return fmt.Errorf("want sync or async")
			}
			return nil
		}},
	{"delegate_async_close", false,
		func(h *Hints) string { return boolString(h.AsyncClose) },
		func(h *Hints, v string) (err error) { h.AsyncClose, err = parseBool(v); return }},
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// parseBool accepts the spellings MPI hints use.
func parseBool(v string) (bool, error) {
	switch v {
	case "true", "enable", "1", "yes":
		return true, nil
	case "false", "disable", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("want true or false")
}

func lookupHint(name string) (*hintDef, bool) {
	for i := range hintTable {
		if hintTable[i].name == name {
			return &hintTable[i], true
		}
	}
	for i := range romioHints {
		if romioHints[i].name == name {
			return &romioHints[i], true
		}
	}
	return nil, false
}

// HintName returns the i-th known hint, for enumeration.
func HintName(i int) (string, bool) {
	if i < 0 || i >= len(hintTable) {
		return "", false
	}
	return hintTable[i].name, true
}

// DefaultHints returns the hints a file gets without any set.
func (c *Config) DefaultHints() Hints {
	return Hints{RegionSize: c.RegionSize, CorkBytes: 16 << 20}
}

// Get returns the value of hint name.
func (h *Hints) Get(name string) (string, error) {
	d, ok := lookupHint(name)
	if !ok {
		return "", fmt.Errorf("unknown hint %s", name)
	}
	return d.get(h), nil
}

// Set parses and sets hint name; open says whether the file is being opened
// (hints fixed at open are refused later).
func (h *Hints) Set(name, value string, open bool) error {
	d, ok := lookupHint(name)
	if !ok {
		return wire.Errorf(wire.EHINTKEY, "unknown hint %s", name)
	}
	if d.openOnly && !open {
		return errOpenOnly
	}
	nh := *h
	if err := d.set(&nh, value); err != nil {
		return wire.Errorf(wire.EHINT, "hint %s=%q: %w", name, value, err)
	}
	*h = nh
	return nil
}
