//go:build !linux

package main

import "os"

func deviceSectorSize(*os.File) int { return 512 }
