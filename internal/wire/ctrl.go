package wire

// The control page: the first CtrlBytes of a client's shared-memory ring
// belong to the server, which publishes there, for each file the client has
// open, whether the server holds data of the file that is not yet on the
// backend. The ring proper starts after it.
//
// Slot i (1 <= i < CtrlSlots) is the 8 bytes at offset 8*i: 0 when the
// server holds no dirty data of the file, 1 when it does. The server hands
// a slot to a file handle in its open reply (Reply.Slot; 0: none) and owns
// it until the handle is closed. It sets the slot to 1 before it
// acknowledges a write that leaves dirty data, and back to 0 only after that
// data is on the backend. So a client that sees 0 on every server, with no
// write of its own in flight, may read the backend file directly and see
// every acknowledged write. Slots are written and read with 64-bit atomic
// operations.
const (
	CtrlBytes = 4096
	CtrlSlots = CtrlBytes / 8
)

// Slot states.
const (
	SlotClean uint64 = 0
	SlotDirty uint64 = 1
)
