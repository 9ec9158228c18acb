//go:build grown

package main

import _ "github.com/piboot/piboot/internal/stack"
