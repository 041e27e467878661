package units

import "testing"

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true},
		{"64K", 64 << 10, true},
		{"64k", 64 << 10, true},
		{"1MiB", 1 << 20, true},
		{"2g", 2 << 30, true},
		{" 3 T ", 3 << 40, true},
		{"5B", 5, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5M", 0, false},
		{"9223372036854775807K", 0, false},
		{"K", 0, false},
	} {
		got, err := ParseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseSize: sizes parse without panicking, and never negative.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "64K", "1MiB", "2g", " 3 T ", "-1", "9223372036854775807K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("%q parsed as %d", s, n)
		}
	})
}
