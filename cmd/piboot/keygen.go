//go:build !pibootlite

package main

import (
	"fmt"
	"os"

	"github.com/piboot/piboot/sysupdate"
)

func init() {
	register("keygen", runKeygen)
}

func runKeygen(args []string) int {
	fs := newFlagSet("keygen", "[PREFIX]")
	name := fs.String("name", "piboot updates", "user ID name")
	email := fs.String("email", "", "user ID e-mail")
	fs.Parse(args)
	prefix := "piboot-update"
	if fs.NArg() > 0 {
		prefix = fs.Arg(0)
	}
	privPath, pubPath := prefix+".key", prefix+".pgp"
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fail("keygen", fmt.Errorf("%s exists; not overwriting a key", p))
		}
	}
	priv, pub, err := sysupdate.GenerateKey(*name, "", *email)
	if err != nil {
		return fail("keygen", err)
	}
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		return fail("keygen", err)
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		os.Remove(privPath)
		return fail("keygen", err)
	}
	fmt.Printf("private key (keep it secret; it signs update directories): %s\npublic key (the image's import-pubring.pgp): %s\n", privPath, pubPath)
	return 0
}
