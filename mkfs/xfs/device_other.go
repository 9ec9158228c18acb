//go:build !linux

package xfs

import "io"

func dataRangesFunc(io.ReaderAt) func(off, n int64) ([][2]int64, error) { return nil }

func deviceSectorSize(any) int { return 512 }
