package transport

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// HostID identifies the host as a Unix socket sees it: the kernel's boot id
// and the inode of this process's network namespace. Two processes with
// the same HostID can reach each other's Unix sockets and share memory
// through passed descriptors; processes in other network namespaces count
// as other hosts even on one kernel (tests build clusters out of
// namespaces, which share /tmp, so the boot id alone would join them).
// It is "" if either part cannot be read, and then no host matches. It
// reads two small /proc files; callers ask once per connection.
func HostID() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	fi, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s/net:%d", strings.TrimSpace(string(boot)), st.Ino)
}
