package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/testutil"
)

// BenchmarkBoot boots a fresh 32 GiB card twice (run with -benchtime=1x) and reports
// the "switch_root … after N ms" figures of both boots and, separately, how much of each
// was module loading.
func BenchmarkBoot(b *testing.B) {
	a := Build(b)
	for i := 0; i < b.N; i++ {
		first, second, m1, m2 := firstAndSecondBoot(b, a, false)
		b.ReportMetric(float64(first), "first-switch_root-ms")
		b.ReportMetric(float64(second), "second-switch_root-ms")
		b.ReportMetric(float64(m1), "first-modules-ms")
		b.ReportMetric(float64(m2), "second-modules-ms")
		b.ReportMetric(float64(first-m1), "first-without-modules-ms")
		b.ReportMetric(float64(second-m2), "second-without-modules-ms")
	}
}

// BenchmarkInitrdSize reports the compressed initramfs with and without modules.
func BenchmarkInitrdSize(b *testing.B) {
	a := Build(b)
	_, modules := testutil.Kernel(b, "arm64")
	bb, err := initrd.Busybox("arm64", initrd.ShellCommands, filepath.Join(testutil.Cache(), "arm64"))
	if err != nil {
		b.Fatal(err)
	}
	init := filepath.Join(filepath.Dir(a.Initrd), "piboot-init")
	out := filepath.Join(b.TempDir(), "initrd.cpio.zst")
	for i := 0; i < b.N; i++ {
		without, err := initrd.BuildFile(out, initrd.Config{Init: init, Busybox: bb, BusyboxCommands: initrd.ShellCommands})
		if err != nil {
			b.Fatal(err)
		}
		with, err := initrd.BuildFile(out, initrd.Config{Init: init, Busybox: bb, BusyboxCommands: initrd.ShellCommands,
			ModuleTree: modules, Modules: initrd.DefaultModules["arm64"]})
		if err != nil {
			b.Fatal(err)
		}
		st, _ := os.Stat(init)
		bst, _ := os.Stat(bb)
		b.ReportMetric(float64(without.CompressedBytes), "bytes-without-modules")
		b.ReportMetric(float64(with.CompressedBytes), "bytes-with-modules")
		b.ReportMetric(float64(len(with.Modules)), "modules")
		b.ReportMetric(float64(st.Size()), "piboot-init-bytes")
		b.ReportMetric(float64(bst.Size()), "busybox-bytes")
	}
}
