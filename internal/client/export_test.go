package client

// SetRequestHooksForTest sets the hooks a test uses to hold a nonblocking
// request before it starts (start) and to see settle wait for one
// (settleWait, called under the file's lock); restore puts the old ones
// back.
func SetRequestHooksForTest(start, settleWait func()) (restore func()) {
	oldS, oldW := requestStartHook, settleWaitHook
	requestStartHook, settleWaitHook = start, settleWait
	return func() { requestStartHook, settleWaitHook = oldS, oldW }
}

// SetLeaseTurnHookForTest sets the hook a nonblocking lease write calls
// before it waits for its turn (false) and once it has it (true).
func SetLeaseTurnHookForTest(h func(turn bool)) (restore func()) {
	old := leaseTurnHook
	leaseTurnHook = h
	return func() { leaseTurnHook = old }
}

// SetCorkTakenHookForTest sets a function that sendCorked runs between
// taking a file's corked batches and submitting them, until restore.
func SetCorkTakenHookForTest(h func()) (restore func()) {
	old := corkTakenHook
	corkTakenHook = h
	return func() { corkTakenHook = old }
}

// LocalFS is localFS: whether a statfs f_type is a local file system
// (LeaseMinLocal applies to files on it).
var LocalFS = localFS

// SetAtomicHooksForTest sets the hooks that run when an atomic write has
// handed over a part with more to come (part) and when an end marker waits
// for its session's atomic call (markerWait).
func SetAtomicHooksForTest(part, markerWait func()) (restore func()) {
	oldP, oldM := atomicPartHook, markerWaitHook
	atomicPartHook, markerWaitHook = part, markerWait
	return func() { atomicPartHook, markerWaitHook = oldP, oldM }
}
