package client

import (
	"strings"
	"testing"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

func TestIdentitiesAgree(t *testing.T) {
	addrs := []transport.Addr{{Net: "tcp", Addr: "n1:7000"}, {Net: "tcp", Addr: "10.0.0.1:7000"}, {Net: "tcp", Addr: "n3:7000"}}
	cases := []struct {
		name string
		ids  []identity
		want string // "" : agree
	}{
		{"one job", []identity{{"a", 9, 0}, {"b", 9, 1}, {"c", 9, 2}}, ""},
		{"servers without a list", []identity{{"a", 0, 0}, {"b", 0, 0}, {"c", 0, 0}}, ""},
		{"old servers (no identity)", []identity{{}, {}, {}}, ""},
		{"one server twice", []identity{{"a", 0, 0}, {"a", 0, 0}, {"c", 0, 0}}, "entries 0 (tcp:n1:7000) and 1 (tcp:10.0.0.1:7000) reach the same server"},
		{"two jobs", []identity{{"a", 9, 0}, {"b", 8, 1}, {"c", 9, 2}}, "different server lists"},
		{"out of order", []identity{{"a", 9, 0}, {"c", 9, 2}, {"b", 9, 1}}, "number 2 in its list, not 1"},
	}
	for _, c := range cases {
		err := identitiesAgree(addrs, c.ids)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (wire.CodeOf(err) != wire.ENOTOWNER || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want ENOTOWNER with %q", c.name, err, c.want)
		}
	}
}
