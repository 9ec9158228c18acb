// Package sysupdate implements systemd-sysupdate's contract for piboot: sysupdate.d transfer
// files, MatchPattern matching and formatting, systemd's version ordering, signed SHA256SUMS
// manifests, directory and HTTP(S) sources, instance discovery on partitions and in
// directories, vacuuming, slot choice, a streaming install that never needs a temporary copy
// of a partition image, and boot counting with blessing (Boot Loader Spec automatic boot
// assessment).
//
// The file contract (names, manifest format, signature files, derived partition types, the
// rename ladder of files) is systemd's, so update directories and transfer files written for
// systemd-sysupdate keep working, and the reverse.
package sysupdate
