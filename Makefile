# piboot's two set-up commands are `make image` and `make test`; both install what they need.
ARCH    ?= arm64
VERSION ?= v0
OUT     ?= out
CACHE   ?= $(HOME)/.cache/piboot
GO      ?= go
export PIBOOT_CACHE := $(CACHE)
, := ,

.PHONY: all deps test vet cli image initrd run bench clean

all: image

# deps: Debian packages for the tests, and Debian's kernels and systemd-boot for arm64 (the
# default image) and amd64 (x86-64 UKIs and OVMF boots in the tests).
deps:
	@scripts/deps.sh host
	@scripts/deps.sh arch arm64
	@scripts/deps.sh arch amd64

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags pibootlite ./cmd/piboot

# test: every test, QEMU boots included. PIBOOT_REQUIRE_ALL makes a missing tool or kernel
# a failure instead of a skip, so CI cannot pass by skipping.
test: deps vet
	PIBOOT_REQUIRE_ALL=1 $(GO) test -count=1 -timeout 40m ./...

# cli: the piboot command for this machine: $(OUT)/piboot, the front door with the disk tools
# (repart, mkfs) built in, and $(OUT)/piboot-full, the complete CLI it hands every other
# subcommand to. Install both into one directory (cmd/piboot/main.go says why there are two).
HOSTGO := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-buildid= -s -w'
cli:
	@mkdir -p $(OUT)
	$(HOSTGO) -tags pibootlite -o $(OUT)/piboot ./cmd/piboot
	$(HOSTGO) -o $(OUT)/piboot-full ./cmd/piboot

# initrd: out/initrd.cpio.zst and the matching out/vmlinuz (owner: piboot-init).
#   make initrd ARCH=amd64   for x86-64; the u-root busybox is cached in $(CACHE)/$(ARCH).
initrd: deps
	@mkdir -p $(OUT)
	$(GO) run ./cmd/piboot initrd -arch $(ARCH) -cache $(CACHE) -modules $(CACHE)/$(ARCH)/modules -o $(OUT)/initrd.cpio.zst
	cp -L $(CACHE)/$(ARCH)/vmlinuz $(OUT)/vmlinuz

# image: the default image of images/demo into $(OUT) (owner: image builder).
#   make image VERSION=v1                              the next version (v0 by default)
#   make image FIRMWARE=RPi4_UEFI_Firmware_v1.50.zip   adds the Raspberry Pi 4 UEFI firmware
#   make image CMDLINE_EXTRA="piboot.shell"            appended to the kernel command line
# The store holds piboot-demo (the init the booted system runs) and piboot, static for $(ARCH),
# built reproducibly (-trimpath, no build id, no VCS stamp); on the device piboot is the
# complete build (no front door), one binary for update, bless and the disk tools.
FIRMWARE      ?=
CMDLINE_EXTRA ?=
STORE         := $(OUT)/.store-$(VERSION)
GOTARGET      := CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -buildvcs=false -ldflags='-buildid= -s -w'
# Reproducible by default: every time stamp (files, filesystems, signatures) is the last
# commit's time unless SOURCE_DATE_EPOCH is given.
image: export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image: deps initrd cli
	@rm -rf $(STORE) && mkdir -p $(STORE)/bin
	$(GOTARGET) -o $(STORE)/bin/piboot-demo ./cmd/piboot-demo
	$(GOTARGET) -o $(STORE)/bin/piboot ./cmd/piboot
	$(GO) run ./cmd/piboot build -c images/demo/image.conf -o $(OUT) --version $(VERSION) \
		--set Kernel.Initrd=$(OUT)/initrd.cpio.zst --set Store.Tree=$(STORE) \
		$(if $(FIRMWARE),--firmware $(FIRMWARE)) $(if $(CMDLINE_EXTRA),--cmdline-extra "$(CMDLINE_EXTRA)")

# run: boot the built image in QEMU (AAVMF UEFI firmware, the image as a USB stick) with the
# serial console on this terminal; quit with Ctrl-A X. The image is copied to a scratch disk
# of RUN_SIZE (so the first boot has room to grow root), so out/ is never modified.
#   make run VERSION=v1   RUN_DISK=virtio   RUN_SIZE=4G
RUN_DISK ?= usb
RUN_SIZE ?= 2G
RUN_DIR  := $(CACHE)/run
run:
	@test -f $(OUT)/piboot_$(VERSION).raw || { echo "run: $(OUT)/piboot_$(VERSION).raw does not exist: make image VERSION=$(VERSION) first"; exit 1; }
	@mkdir -p $(RUN_DIR)
	@cp --sparse=always $(OUT)/piboot_$(VERSION).raw $(RUN_DIR)/disk.raw
	@truncate -s $(RUN_SIZE) $(RUN_DIR)/disk.raw
	@cp /usr/share/AAVMF/AAVMF_VARS.fd $(RUN_DIR)/vars.fd
	@echo "run: booting $(OUT)/piboot_$(VERSION).raw ($(RUN_DISK), $(RUN_SIZE)) under UEFI; Ctrl-A X quits"
	qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024 -accel tcg -nographic \
		-drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
		-drive if=pflash,format=raw,file=$(RUN_DIR)/vars.fd \
		$(if $(filter virtio,$(RUN_DISK)),-drive if=virtio$(,)format=raw$(,)file=$(RUN_DIR)/disk.raw,\
		-device qemu-xhci -drive if=none$(,)id=stick$(,)format=raw$(,)file=$(RUN_DIR)/disk.raw -device usb-storage$(,)drive=stick)

bench: deps
	@for b in bench/*.sh; do [ -e "$$b" ] && bash "$$b"; done; true

clean:
	rm -rf $(OUT)
