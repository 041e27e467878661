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

// TestTokenComparedInConstantTime: no source file of the package compares
// a token with == or != (which returns at the first differing byte, so its
// time tells an attacker how much of a guess was right). The secret is
// only ever an HMAC key (transport.Challenge), whose proofs transport
// compares with hmac.Equal (TestProofOK there).
func TestTokenComparedInConstantTime(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
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
			}
			return true
		})
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
