package wire

// The descriptions. Each is the msgpack value of one frame; data never goes
// inside them (see spec.md). Keys are short and stable; a receiver ignores
// keys it does not know, so fields can be added without a version bump.

// Open flags, the same bits as DELEGATE_O_* in include/delegate.h.
const (
	ORdonly uint32 = 0x01
	OWronly uint32 = 0x02
	ORdwr   uint32 = 0x04
	OCreat  uint32 = 0x08
	OExcl   uint32 = 0x10
)

// Write and read flags.
const (
	// IOColl marks a piece of a collective call; the request's CollTag is
	// valid.
	IOColl uint32 = 0x02
	// IOAtomic asks the server to apply the request as one unit with
	// respect to other atomic requests on the same bytes.
	IOAtomic uint32 = 0x04
	// 0x08 was the end-marker flag of protocol drafts before CollEnd; it
	// is not reused.

	// IOHold, on a collective write whose data is in the shared-memory
	// ring, lets the server keep the ring slot unanswered until the
	// collective's end markers: it then writes the collective's long
	// contiguous runs straight from the ranks' slots to the backend
	// (server/collwrite.go). A client sets it only when it never waits for
	// the answer before it sends its end marker (no acknowledgement asked,
	// no cork, not atomic) and sends a piece that finds the ring full
	// without it, inline, which makes the server apply what it holds.
	IOHold uint32 = 0x10
	// IOMore, on an atomic write or read, says that the call (AG) goes on
	// in a later request of the stream: the server applies the parts as
	// one unit, keeping the file's atomic lock from the first to the last
	// (the one without IOMore; server/atomic.go).
	IOMore uint32 = 0x20
)

// CollTag names one rank's part of one collective call on one file. It is
// the only form of the tag in Go: the client fills it from the C API's
// delegate_io_opts (libdelegate/export.go, ioOpts), carries it on its
// requests and sends it inline in Write, Read and CollEnd (the keys cs, cr,
// cn, cg of spec.md); the server keys its collective state by it.
type CollTag struct {
	Seq   int64 `codec:"cs,omitempty"` // the collective's sequence number on the file handle, the same on every rank
	Rank  int32 `codec:"cr,omitempty"` // the caller's rank in the file's communicator
	Size  int32 `codec:"cn,omitempty"` // the communicator's size
	Group int64 `codec:"cg,omitempty"` // an id one rank makes at open and broadcasts
}

// Check reports whether t names a rank of a communicator.
func (t CollTag) Check() error {
	if t.Size <= 0 || t.Rank < 0 || t.Rank >= t.Size {
		return Errorf(EINVAL, "collective tag of rank %d of %d", t.Rank, t.Size)
	}
	return nil
}

// Counter operations, the same values as DELEGATE_COUNTER_*.
const (
	CounterGet      uint8 = 0
	CounterSet      uint8 = 1
	CounterFetchAdd uint8 = 2
)

// Hello is the first frame a client sends on a new connection, on the raw
// socket before yamux starts. On a Unix socket the file descriptor of the
// shared-memory ring rides with it (SCM_RIGHTS) when RingSize > 0.
type Hello struct {
	Client   string `codec:"c"`             // host:pid, for logs
	Nonce    []byte `codec:"cn,omitempty"`  // the client's nonce (AuthNonceSize bytes) when it holds a secret
	Servers  uint32 `codec:"n"`             // servers in the client's list
	Index    uint32 `codec:"i"`             // this server's index in that list
	ListHash uint64 `codec:"h"`             // route.ListHash of the list
	RingSize uint64 `codec:"r,omitempty"`   // bytes of the ring passed along; 0: none
	Monitor  bool   `codec:"mon,omitempty"` // stats only: no files, no routing check
	// Bulk asks for this many bulk connections (spec.md, "Bulk
	// connections"): over TCP, large writes and reads then carry their
	// data on raw connections beside the session. 0: none.
	Bulk uint32 `codec:"bk,omitempty"`
}

// Open opens (and with OCreat creates) a file. The reply carries the
// server's file id and the file's logical size.
type Open struct {
	Path       string `codec:"p"`           // absolute, clean
	Flags      uint32 `codec:"f"`           // O*
	Perm       uint32 `codec:"m,omitempty"` // for a created file; 0 means 0644
	RegionSize int64  `codec:"rs"`          // the client's region size for this file
}

// Close releases a file id. Unless Async, the server writes the file's
// buffered data to the backend before replying.
type Close struct {
	File  uint64 `codec:"f"`
	Async bool   `codec:"a,omitempty"`
	// LeaseWrites and LeaseBytes: the lease writes the client made to the
	// backend file itself since it opened it (client lease.go), sent to
	// the file's home server only, for the file's summary: the server
	// never sees them otherwise. Negative values are ignored.
	LeaseWrites int64 `codec:"lw,omitempty"`
	LeaseBytes  int64 `codec:"lb,omitempty"`
}

// BulkRef names a transfer on a bulk connection (spec.md, "Bulk
// connections"): the same three keys in a write and in a read, inline.
type BulkRef struct {
	BulkConn uint32 `codec:"bc,omitempty"` // which of the session's bulk connections
	BulkSeq  uint64 `codec:"bs,omitempty"` // the transfer's number on it
	BulkLen  uint64 `codec:"bl,omitempty"` // > 0: the data goes there; its length
}

// Write stores data at the extents Ext (an Extents encoding). The data is
// the frame's payload when RingLen is 0, else RingLen bytes at RingOff of
// the client's ring. Its length equals the extents' total.
type Write struct {
	File    uint64 `codec:"f"`
	Ext     []byte `codec:"x"`
	RingOff uint64 `codec:"ro,omitempty"`
	RingLen uint64 `codec:"rl,omitempty"`
	// BulkLen > 0: the data comes on bulk connection BulkConn instead, as
	// the transfer numbered BulkSeq on it (a BulkWrite header, then
	// BulkLen bytes).
	BulkRef
	Flags   uint32 `codec:"fl,omitempty"` // IO*
	CollTag        // with IOColl; inline: cs, cr, cn, cg
	// AG, with IOAtomic: the atomic call's id, the same on each of its
	// requests (IOMore), unique on the session.
	AG uint64 `codec:"ag,omitempty"`
}

// Read fetches the extents Ext. The data goes into RingLen bytes at RingOff
// of the client's ring when RingLen > 0, else it is the reply's payload. The
// reply's N is the number of bytes, from the start of the list, that lie
// below the end of file as this server knows it; Size is that end of file.
type Read struct {
	File    uint64 `codec:"f"`
	Ext     []byte `codec:"x"`
	RingOff uint64 `codec:"ro,omitempty"`
	RingLen uint64 `codec:"rl,omitempty"`
	// BulkLen > 0: the server sends the data on bulk connection BulkConn
	// before the reply: a BulkRead header numbered BulkSeq, then the
	// reply's N bytes (those below its end of file; none if it fails).
	BulkRef
	Flags   uint32 `codec:"fl,omitempty"`
	CollTag        // with IOColl; inline: cs, cr, cn, cg
	AG      uint64 `codec:"ag,omitempty"` // with IOAtomic: as Write's
}

// CollEnd is a collective's end marker: each rank sends one to every server
// after its pieces of the collective Tag names, on the same stream, also
// when its part was empty or failed. The server answers it once it holds
// the markers of all Tag.Size ranks, so every later request of the rank, on
// any server, sees every rank's pieces of that collective, and no data
// moves between ranks.
type CollEnd struct {
	File    uint64 `codec:"f"`
	CollTag        // inline: cs, cr, cn, cg
}

// FileOp is the description of Stat, Sync and Flush: just the file id.
type FileOp struct {
	File uint64 `codec:"f"`
}

// Resize truncates or extends a file (TResize), or makes sure it is at
// least Size bytes (TAlloc).
type Resize struct {
	File uint64 `codec:"f"`
	Size int64  `codec:"s"`
}

// Delete removes a file by path.
type Delete struct {
	Path string `codec:"p"`
}

// Counter operates on a named 64-bit counter of an open file.
type Counter struct {
	File  uint64 `codec:"f"`
	Key   string `codec:"k"`
	Op    uint8  `codec:"o"`
	Value int64  `codec:"v,omitempty"`
}

// Stats asks for the server's statistics; the reply's payload is a msgpack
// value of the server's snapshot type.
type Stats struct {
	Reset bool `codec:"r,omitempty"` // reset peaks after reading
	// Stop asks the server to shut down gracefully (drain, then exit) after
	// the reply, as SIGTERM does: how delegate-run stops servers on other
	// hosts, whatever their launcher does with signals. Monitor sessions
	// only; a server that does not know the key just answers.
	Stop bool `codec:"st,omitempty"`
}

// Reply answers any request. Fields a request type does not use are zero.
type Reply struct {
	Code  Code   `codec:"e,omitempty"`
	Msg   string `codec:"m,omitempty"`
	File  uint64 `codec:"f,omitempty"`  // open: the file id
	N     int64  `codec:"n,omitempty"`  // write: bytes stored; read: bytes valid
	Size  int64  `codec:"s,omitempty"`  // open, stat, read: logical size
	Value int64  `codec:"v,omitempty"`  // counter: value before the operation
	Name  string `codec:"nm,omitempty"` // hello: the server's name
	Slot  uint32 `codec:"sl,omitempty"` // open: the file's control page slot (ctrl.go); 0: none
	// Dev and Ino: open: the device and inode number of the server's
	// backend file (0: not known). A client on the same host opens the
	// path itself for direct reads and lease writes only if its descriptor
	// names this file on every server: the path may have been replaced
	// since the servers opened it.
	Dev uint64 `codec:"dv,omitempty"`
	Ino uint64 `codec:"in,omitempty"`
	// Local and Host: hello over TCP: the server's Unix socket path and its
	// host identity (transport.HostID). A client whose own identity equals
	// Host is on the same host and may reconnect to Local, where the
	// shared-memory ring and direct reads work. Empty from a server without
	// a Unix socket (and from older servers).
	Local string `codec:"lu,omitempty"`
	Host  string `codec:"hi,omitempty"`
	// Direct: hello: the server's direct threshold (--direct), the
	// smallest written extent it sends straight to the backend instead of
	// buffering. A client makes lease writes only of extents at least
	// this long (client lease.go). 0: not said (an older server).
	Direct int64 `codec:"dt,omitempty"`
	// Hello: the server's identity. ID is random per server process, so a
	// client whose list reaches one server by two entries (a host name and
	// its address) sees the same ID twice. Peers is route.ListHash of the
	// server list the server was started with (0: none) and Index its
	// place in it: the client checks that every server of its list reports
	// the same Peers, whatever text each side used for the addresses.
	ID    string `codec:"id,omitempty"`
	Peers uint64 `codec:"ph,omitempty"`
	Index uint32 `codec:"ix,omitempty"`
	// Proof: hello, from a server with a secret: HMAC-SHA256 proving the
	// server knows it (spec.md, "Authentication").
	Proof []byte `codec:"sp,omitempty"`
	// BulkID, BulkNonce, BulkConns: hello over TCP that asked for bulk
	// connections: the session's bulk id, a random nonce, and how many
	// connections the client may bind to the session (transport.BulkTag).
	BulkID    uint64 `codec:"bi,omitempty"`
	BulkNonce []byte `codec:"bn,omitempty"`
	BulkConns uint32 `codec:"bq,omitempty"`
}

// Auth is the authentication step of the handshake (type TAuth, before
// yamux; spec.md, "Authentication"). A server that holds a secret answers
// a hello with an Auth reply carrying its Nonce; the client answers with
// an Auth request carrying its Proof.
type Auth struct {
	Nonce []byte `codec:"sn,omitempty"` // challenge: the server's nonce (AuthNonceSize bytes)
	Proof []byte `codec:"p,omitempty"`  // answer: HMAC-SHA256 (AuthProofSize bytes)
}

// Sizes of the authentication fields: a nonce or proof of another length is
// a protocol error.
const (
	AuthNonceSize = 32
	AuthProofSize = 32
)

// Err returns the reply's error, or nil.
func (r *Reply) Err() error {
	if r.Code == OK {
		return nil
	}
	return &Error{Code: r.Code, Msg: r.Msg}
}

// ReplyTo builds the reply for a request that failed with err (or
// succeeded, if err is nil).
func ReplyTo(err error) Reply {
	if err == nil {
		return Reply{}
	}
	return Reply{Code: CodeOf(err), Msg: err.Error()}
}
