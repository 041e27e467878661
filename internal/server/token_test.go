package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenOK(t *testing.T) {
	cases := []struct {
		got, want string
		ok        bool
	}{
		{"", "", true},
		{"anything", "", true}, // a server without a token takes anyone (Unix sockets)
		{"s3cret", "s3cret", true},
		{"", "s3cret", false},
		{"s3cre", "s3cret", false},
		{"s3cret!", "s3cret", false},
		{"S3cret", "s3cret", false},
		{"s3cret\n", "s3cret", false},
	}
	for _, c := range cases {
		if got := tokenOK(c.got, c.want); got != c.ok {
			t.Errorf("tokenOK(%q, %q) = %v, want %v", c.got, c.want, got, c.ok)
		}
	}
}

// TestTokenComparedInConstantTime: no source file of the package compares
// a token with == or != (which returns at the first differing byte, so its
// time tells an attacker how much of a guess was right); tokenOK uses
// crypto/subtle.
func TestTokenComparedInConstantTime(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	usesSubtle := false
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (isToken(n.X) || isToken(n.Y)) {
					if !isEmptyString(n.X) && !isEmptyString(n.Y) {
						t.Errorf("%s: a token compared with %s", fset.Position(n.Pos()), n.Op)
					}
				}
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "subtle" && n.Sel.Name == "ConstantTimeCompare" {
					usesSubtle = true
				}
			}
			return true
		})
	}
	if !usesSubtle {
		t.Error("no call of subtle.ConstantTimeCompare in the package")
	}
}

func isToken(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return strings.Contains(strings.ToLower(e.Sel.Name), "token")
	case *ast.Ident:
		return strings.Contains(strings.ToLower(e.Name), "token")
	}
	return false
}

func isEmptyString(e ast.Expr) bool {
	l, ok := e.(*ast.BasicLit)
	return ok && l.Value == `""`
}
