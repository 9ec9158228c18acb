package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// bootFigures are what piboot-init's console says about one boot (milliseconds).
type bootFigures struct {
	switchRoot int // "switch_root: … after N ms": since the kernel executed PID 1
	modules    int // "modules: loaded K in N ms": first module load to last module in
	finit      int // of which inside finit_module (summed over threads)
	loaded     int // modules loaded (K)
	disk       int // "disk: … after N ms": disk discovery
	repart     int
	mounts     int
	uptime     int // when the kernel executed PID 1
	gostart    int // from the exec to main's package initialization
	user, sys  int // piboot-init's CPU time (module loading is system time)
}

var figureREs = map[string]*regexp.Regexp{
	"switch":  regexp.MustCompile(`(?m)^piboot-init: switch_root: \S+ after (\d+) ms$`),
	"modules": regexp.MustCompile(`(?m)^piboot-init: modules: loaded (\d+) in (\d+) ms \(.*?(\d+) ms in finit_module`),
	"disk":    regexp.MustCompile(`(?m)^piboot-init: disk: \S+ \(.*\) after (\d+) ms`),
	"time":    regexp.MustCompile(`(?m)^piboot-init: time: executed at (\d+) ms of uptime \(Go start-up (\d+) ms\); disk \d+ ms, repart (\d+) ms, waiting for modules \d+ ms, mounts (\d+) ms.*; cpu (\d+) ms user, (\d+) ms system$`),
}

func parseFigures(tb testing.TB, log string) bootFigures {
	tb.Helper()
	get := func(name string) []int {
		m := figureREs[name].FindStringSubmatch(log)
		if m == nil {
			tb.Fatalf("no %s figures (/%s/) in the console log:\n%s", name, figureREs[name], log)
		}
		var out []int
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			out = append(out, n)
		}
		return out
	}
	var f bootFigures
	f.switchRoot = get("switch")[0]
	m := get("modules")
	f.loaded, f.modules, f.finit = m[0], m[1], m[2]
	f.disk = get("disk")[0]
	t := get("time")
	f.uptime, f.gostart, f.repart, f.mounts, f.user, f.sys = t[0], t[1], t[2], t[3], t[4], t[5]
	return f
}

// BenchmarkBoot boots a fresh 32 GiB card twice (run with -benchtime=1x) and reports,
// for each boot, the "switch_root … after N ms" figure, module loading, switch_root
// less module loading, disk discovery and piboot-init's CPU time. PIBOOT_E2E_TIMELINE=1
// logs both timed consoles; PIBOOT_BENCH_APPEND adds to the kernel command line (e.g.
// "GODEBUG=inittrace=1" or "loglevel=7" to see the kernel's own steps).
func BenchmarkBoot(b *testing.B) {
	a := Build(b)
	extra := os.Getenv("PIBOOT_BENCH_APPEND")
	for i := 0; i < b.N; i++ {
		card := filepath.Join(b.TempDir(), "card.img")
		MakeCard(b, card, CardSpec{Size: 32 * gib}, a.Demo)
		for n, name := range []string{"first", "second"} {
			vm := boot(b, a, extra, card)
			vm.WaitFor(demoRE("/dev/mmcblk0p4", n+1), bootWait)
			vm.Wait(bootWait)
			if os.Getenv("PIBOOT_E2E_TIMELINE") != "" {
				b.Logf("%s boot:\n%s", name, vm.TimedLog())
			}
			f := parseFigures(b, vm.Log())
			b.ReportMetric(float64(f.switchRoot), name+"-switch_root-ms")
			b.ReportMetric(float64(f.modules), name+"-modules-ms")
			b.ReportMetric(float64(f.switchRoot-f.modules), name+"-without-modules-ms")
			b.ReportMetric(float64(f.finit), name+"-finit_module-ms")
			b.ReportMetric(float64(f.loaded), name+"-modules-loaded")
			b.ReportMetric(float64(f.disk), name+"-disk-ms")
			b.ReportMetric(float64(f.repart), name+"-repart-ms")
			b.ReportMetric(float64(f.mounts), name+"-mounts-ms")
			b.ReportMetric(float64(f.user), name+"-cpu-user-ms")
			b.ReportMetric(float64(f.sys), name+"-cpu-system-ms")
			b.ReportMetric(float64(f.uptime), name+"-kernel-ms")
			b.ReportMetric(float64(f.gostart), name+"-go-startup-ms")
		}
	}
}

// BenchmarkGoFloor boots, in place of piboot-init, the least a Go PID 1 can be
// (testdata/floor: it reaches main, logs a line, powers off) with BenchmarkBoot's kernel,
// command line and machine, and reports the time from the kernel's exec of /init to that
// program's main: the Go runtime's own start-up, the floor under BenchmarkBoot's
// go-startup-ms and so under every switch_root figure.
func BenchmarkGoFloor(b *testing.B) {
	vmlinuz, _ := testutil.Kernel(b, "arm64")
	dir := b.TempDir()
	bin := filepath.Join(dir, "floor")
	if err := goBuild(bin, "./testdata/floor"); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(dir, "floor.cpio.zst")
	if _, err := initrd.BuildFile(img, initrd.Config{Init: bin}); err != nil {
		b.Fatal(err)
	}
	var ms []int
	for i := 0; i < b.N; i++ {
		vm := qemu.Start(b, qemu.Config{Kernel: vmlinuz, Initrd: img, Append: "quiet panic=-1"})
		m := vm.WaitFor(`^piboot-floor: (?:exec to main (\d+) ms|error: .*)$`, bootWait)
		vm.Wait(bootWait)
		if m[1] == "" {
			b.Fatalf("%s", m[0])
		}
		n, _ := strconv.Atoi(m[1])
		ms = append(ms, n)
	}
	b.Logf("exec to main, ms: %v", ms)
	slices.Sort(ms)
	b.ReportMetric(float64(ms[len(ms)/2]), "floor-go-startup-ms") // the median, for -benchtime=Nx
}

// TestParseFigures keeps the benchmark's console parsing in step with piboot-init's lines.
func TestParseFigures(t *testing.T) {
	log := strings.Join([]string{
		"piboot-init: disk: /dev/mmcblk0 (piboot.disk=mmcblk0) after 3698 ms, 34359738368 bytes",
		"piboot-init: modules: loaded 16 in 3962 ms (for devices: cqhci.ko sdhci.ko sdhci-pci.ko in 900 ms; 24 for hardware not here; 2710 ms in finit_module; 1 not needed here, 0 failed; loaded when needed: xfs.ko)",
		"piboot-init: time: executed at 8263 ms of uptime (Go start-up 131 ms); disk 3698 ms, repart 92 ms, waiting for modules 74 ms, mounts 158 ms, modules 3962 ms (2710 ms in finit_module); cpu 1374 ms user, 5515 ms system",
		"piboot-init: switch_root: /nix/store/bin/piboot-demo after 4502 ms",
	}, "\n") + "\n"
	f := parseFigures(t, log)
	want := bootFigures{switchRoot: 4502, modules: 3962, finit: 2710, loaded: 16, disk: 3698, repart: 92, mounts: 158, uptime: 8263, gostart: 131, user: 1374, sys: 5515}
	if f != want {
		t.Fatalf("parseFigures = %+v, want %+v", f, want)
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
