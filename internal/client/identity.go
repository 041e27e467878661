package client

import (
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// identity is who a server says it is in its hello reply: a random id per
// server process, and the server list it was started with (its
// route.ListHash, 0 if none) with its place in it.
type identity struct {
	id    string
	peers uint64
	index uint32
}

// checkIdentities makes client and servers agree on the list by the
// servers' identities rather than by the text of the addresses (a host
// name and its address are one server): no two entries of the client's
// list may reach the same server, and servers started with a list must
// all have been started with the same one, each at the entry the client
// reached it by. The server has already checked the count and its index
// (hello.go); this catches what one server alone cannot see.
func checkIdentities(addrs []transport.Addr, ss []*session) error {
	ids := make([]identity, len(ss))
	for i, s := range ss {
		if s != nil {
			ids[i] = s.ident
		}
	}
	return identitiesAgree(addrs, ids)
}

// identitiesAgree is checkIdentities on the identities alone.
func identitiesAgree(addrs []transport.Addr, ids []identity) error {
	seen := map[string]int{}
	first := -1
	for i, id := range ids {
		if id.id != "" {
			if j, ok := seen[id.id]; ok {
				return wire.Errorf(wire.ENOTOWNER,
					"DELEGATE_SERVERS names one server twice: entries %d (%s) and %d (%s) reach the same server; list every server once",
					j, addrs[j], i, addrs[i])
			}
			seen[id.id] = i
		}
		if id.peers == 0 {
			continue
		}
		if int(id.index) != i {
			return wire.Errorf(wire.ENOTOWNER, "server %s is number %d in its list, not %d as in DELEGATE_SERVERS: same servers, same order",
				addrs[i], id.index, i)
		}
		if first < 0 {
			first = i
		} else if ids[first].peers != id.peers {
			return wire.Errorf(wire.ENOTOWNER, "servers %s and %s were started with different server lists (--peers): they are not the servers of one job",
				addrs[first], addrs[i])
		}
	}
	return nil
}
