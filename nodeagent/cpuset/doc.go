// Package cpuset parses, formats and combines the kernel's CPU lists
// ("0-3,8,10-11") as cpuset.cpus, /sys/devices/system/cpu/online and
// thread_siblings_list write them. Pure: no files.
package cpuset
