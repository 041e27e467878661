package transport

import "testing"

func TestBulkTag(t *testing.T) {
	key := BulkKey("secret")
	nonce := []byte("0123456789abcdef")
	want := BulkTag(key, 7, nonce, 2)
	tests := []struct {
		name string
		tag  [32]byte
		ok   bool
	}{
		{"same", BulkTag(BulkKey("secret"), 7, nonce, 2), true},
		{"other secret", BulkTag(BulkKey("secreT"), 7, nonce, 2), false},
		{"no secret", BulkTag(BulkKey(""), 7, nonce, 2), false},
		{"other session", BulkTag(key, 8, nonce, 2), false},
		{"other nonce", BulkTag(key, 7, []byte("0123456789abcdeF"), 2), false},
		{"other index", BulkTag(key, 7, nonce, 3), false},
	}
	for _, tc := range tests {
		if got := BulkTagOK(tc.tag[:], want); got != tc.ok {
			t.Errorf("%s: BulkTagOK = %v, want %v", tc.name, got, tc.ok)
		}
	}
	if BulkTagOK(want[:31], want) {
		t.Error("a truncated tag is accepted")
	}
	if string(key) == "secret" || len(key) != 32 {
		t.Error("the bulk key is not derived")
	}
}
