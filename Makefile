# piboot's two set-up commands are `make image` and `make test`; both install what they need.
ARCH    ?= arm64
VERSION ?= v0
OUT     ?= out
CACHE   ?= $(HOME)/.cache/piboot
GO      ?= go
export PIBOOT_CACHE := $(CACHE)

.PHONY: all deps test vet image initrd run bench clean

all: image

# deps: Debian packages for the tests, and Debian's kernel and systemd-boot for $(ARCH).
deps:
	@scripts/deps.sh host
	@scripts/deps.sh arch $(ARCH)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

# test: every test, QEMU boots included. PIBOOT_REQUIRE_ALL makes a missing tool or kernel
# a failure instead of a skip, so CI cannot pass by skipping.
test: deps vet
	PIBOOT_REQUIRE_ALL=1 $(GO) test -count=1 -timeout 40m ./...

# initrd: out/initrd.cpio.zst and the matching out/vmlinuz (owner: piboot-init).
initrd: deps
	@mkdir -p $(OUT)
	@echo "initrd: not built yet"; exit 1

# image: the default image of images/demo into $(OUT) (owner: image builder).
image: deps
	@mkdir -p $(OUT)
	@echo "image: not built yet"; exit 1

# run: boot the built image in QEMU with a serial console on this terminal.
run:
	@echo "run: not built yet"; exit 1

bench: deps
	@for b in bench/*.sh; do [ -e "$$b" ] && bash "$$b"; done; true

clean:
	rm -rf $(OUT)
