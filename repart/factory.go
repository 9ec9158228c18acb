package repart

import (
	"github.com/piboot/piboot/gpt"
)

// FactoryReset returns t without the existing partitions whose matching definition has
// FactoryReset=yes (matched as Plan matches: by type, in slot order, to the first definition
// not yet matched), and the partitions it removed. It does no I/O. As systemd-repart does on
// a factory reset, the caller writes the reduced table, then plans and applies as usual, so
// the erased partitions come back new (and formatted, if their definition says so).
func FactoryReset(t *gpt.Table, defs []Definition) (*gpt.Table, []gpt.Partition) {
	matched := make([]bool, len(defs))
	out := t.Clone()
	out.Partitions = out.Partitions[:0]
	var erased []gpt.Partition
	for _, p := range t.Partitions {
		reset := false
		for i := range defs {
			if !matched[i] && defs[i].Type == p.Type {
				matched[i] = true
				reset = defs[i].FactoryReset
				break
			}
		}
		if reset {
			erased = append(erased, p)
		} else {
			out.Partitions = append(out.Partitions, p)
		}
	}
	return out, erased
}
