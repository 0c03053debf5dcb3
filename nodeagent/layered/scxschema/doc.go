// Package scxschema checks an scx_layered layer config the way the real
// scheduler would, before it is handed to scx_layered: the strict JSON Schema
// of ../shared/scx-layered (draft 2020-12, unknown keys rejected), embedded
// here so no file is needed at run time, plus the code checks of FORMAT.md
// §15 that a schema cannot express (util_range and cpus_range ordering,
// integers written as 1.0, byte lengths, duplicate keys and names, one layer
// per HintEquals value, at most 16 CgroupRegex, and topology ids when the
// topology is known).
//
// The generator's tests, the agent (before it restarts the scheduler) and the
// scx_layered stand-in used in supervisor tests all call it, so they reject
// the same configs. It reads no files and runs nothing. Passing it means the
// config passes every check we could derive from upstream's source; it is not
// proof that a real scx_layered accepts it (no sched_ext kernel here).
package scxschema
